package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

const cliTestKey = "MeTKJnC3fIAxeer8erADRTlJ"

// runCLI runs one gongbao subcommand in-process and returns its output and
// exit status.
func runCLI(t *testing.T, cmd *cobra.Command, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("GONGBAO_SIGN_KEY", cliTestKey)
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SilenceUsage = true // as under caddy's root command
	cmd.SetIn(bytes.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	if code = ExitStatusForTest(err); err != nil {
		errOut.WriteString(err.Error())
	}
	if strings.Contains(out.String()+errOut.String(), cliTestKey) {
		t.Fatal("the command printed the key")
	}
	return out.String(), errOut.String(), code
}

func readSample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSignThenVerify(t *testing.T) {
	tampered := bytes.Replace(readSample(t, "claimRequest.xml"), []byte("13631292501"), []byte("13631292502"), 1)
	if _, _, code := runCLI(t, verifyCommand(), tampered); code != 2 {
		t.Fatalf("verify of a tampered message: exit %d, want 2", code)
	}
	signedOut, _, code := runCLI(t, signCommand(), tampered, "--new-uuid")
	if code != 0 {
		t.Fatalf("sign: exit %d", code)
	}
	if !strings.Contains(signedOut, "13631292502") || !strings.Contains(signedOut, "<![CDATA[") {
		t.Error("sign changed the body")
	}
	out, _, code := runCLI(t, verifyCommand(), []byte(signedOut))
	if code != 0 || !strings.HasPrefix(out, "ok: claimRequest") {
		t.Fatalf("verify of the signed output: exit %d, %q", code, out)
	}
}

func TestVerifyReasons(t *testing.T) {
	_, stderr, code := runCLI(t, verifyCommand(), []byte("<claimRequest><requestHead><requestUUID>u</requestUUID></requestHead><requestBody><a>1</a></requestBody></claimRequest>"))
	if code != 2 || !strings.Contains(stderr, "no sign") {
		t.Errorf("missing sign: exit %d %q", code, stderr)
	}
	_, stderr, code = runCLI(t, verifyCommand(), []byte("not xml"))
	if code != 1 || !strings.Contains(stderr, "not a valid message") {
		t.Errorf("not XML: exit %d %q", code, stderr)
	}
	t.Setenv("EMPTY_KEY", "")
	_, stderr, code = runCLI(t, verifyCommand(), readSample(t, "claimRequest.xml"), "--key-env", "EMPTY_KEY")
	if code != 1 || !strings.Contains(stderr, "EMPTY_KEY is empty") {
		t.Errorf("empty key: exit %d %q", code, stderr)
	}
}

// TestSend posts to a stand-in endpoint and checks the exit status for a
// good reply, a refusal and a reply signed with another key.
func TestSend(t *testing.T) {
	cases := []struct {
		name, flag, key string
		want            int
		says            string // on stderr
	}{
		{"accepted", "true", cliTestKey, 0, "signature verified"},
		{"refused", "false", cliTestKey, 3, "the reply verifies but says resultFlag=false"},
		{"reply signed with another key", "true", "another-key", 2, "does NOT verify"},
		// The sidecar refuses an unverified request with an unsigned reply.
		{"unsigned refusal", "false", "", 3, "the reply is unsigned and says resultFlag=false: 受理申请"},
		{"unsigned acceptance", "true", "", 2, "resultFlag=true but is unsigned"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var received []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var buf bytes.Buffer
				buf.ReadFrom(r.Body)
				received = buf.Bytes()
				key := tc.key
				if key == "" {
					key = "any" // the sign is emptied below
				}
				reply := protocol.BuildResponse("claimResponse", protocol.NewUUID(), []protocol.Element{
					{Name: "resultFlag", Text: tc.flag}, {Name: "resultMessage", Text: "受理申请"},
				}, key)
				if tc.key == "" {
					reply = regexp.MustCompile(`<sign>[^<]*</sign>`).ReplaceAll(reply, []byte("<sign></sign>"))
				}
				w.Write(reply)
			}))
			defer srv.Close()
			file := filepath.Join("..", "testdata", "messages", "claimRequest.xml")
			out, stderr, code := runCLI(t, sendCommand(), nil, "--url", srv.URL, "--file", file, "--new-uuid")
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.want, stderr)
			}
			if !strings.Contains(stderr, tc.says) {
				t.Errorf("stderr does not say %q:\n%s", tc.says, stderr)
			}
			if !strings.Contains(out, "<claimResponse>") {
				t.Errorf("the reply was not printed: %q", out)
			}
			env, err := protocol.Parse(received, protocol.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{cliTestKey}); !ok {
				t.Error("the posted message does not verify")
			}
			if !strings.Contains(stderr, "sent claimRequest requestUUID "+env.RequestUUID+"\n") {
				t.Errorf("stderr does not give the requestUUID sent (%s):\n%s", env.RequestUUID, stderr)
			}
		})
	}
}
