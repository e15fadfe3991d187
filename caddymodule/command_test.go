package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	cmd.SetIn(bytes.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	saved := exit
	exit = func(c int) { code = c }
	defer func() { exit = saved }()
	if err := cmd.Execute(); err != nil {
		code = 1
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
	}{
		{"accepted", "true", cliTestKey, 0},
		{"refused", "false", cliTestKey, 3},
		{"reply signed with another key", "true", "another-key", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var received []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var buf bytes.Buffer
				buf.ReadFrom(r.Body)
				received = buf.Bytes()
				w.Write(protocol.BuildResponse("claimResponse", protocol.NewUUID(), []protocol.Element{
					{Name: "resultFlag", Text: tc.flag}, {Name: "resultMessage", Text: "受理申请"},
				}, tc.key))
			}))
			defer srv.Close()
			file := filepath.Join("..", "testdata", "messages", "claimRequest.xml")
			out, _, code := runCLI(t, sendCommand(), nil, "--url", srv.URL, "--file", file)
			if code != tc.want {
				t.Fatalf("exit %d, want %d", code, tc.want)
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
		})
	}
}
