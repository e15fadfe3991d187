package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gongbao",
		Usage: "<sign|verify|send|deliveries|journal|mapping|simulate|doctor> [flags]",
		Short: "Signs, verifies and sends 工保网 protocol messages",
		Long: `
Tools for the 工保网 signed-XML protocol. Keys are read from an environment
variable (--key-env, default GONGBAO_SIGN_KEY) or a file (--key-file), never
from the command line, and are never printed.

  caddy gongbao sign   [--file F] [--new-uuid]   prints F (or stdin) signed
  caddy gongbao verify [--file F] [--explain]    exit 0 if the sign verifies; --explain says why not
  caddy gongbao send   --url U --file F          signs, posts, verifies the reply
  caddy gongbao deliveries list|show|retry|stats  callbacks, via the admin API
  caddy gongbao journal --policy P               recorded exchanges, via the admin API
  caddy gongbao mapping test <mapping> <file>    dry run of a mapping, field by field
  caddy gongbao simulate --url U                 acts as 工保网: the whole lifecycle, callbacks included
  caddy gongbao doctor [--config F]              go-live preflight of a config file or the running server

Exit status: 0 success; 1 usage or I/O error; 2 a signature does not verify;
3 (send) the reply verified but says resultFlag=false.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(signCommand(), verifyCommand(), sendCommand(), deliveriesCommand(), journalCommand(), mappingCommand(), simulateCommand(), doctorCommand())
		},
	})
}

// keyFlags are the flags every subcommand uses to find the key.
type keyFlags struct {
	env  string
	file string
}

func (k *keyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.env, "key-env", "GONGBAO_SIGN_KEY", "environment variable holding the key")
	cmd.Flags().StringVar(&k.file, "key-file", "", "file holding the key (overrides --key-env)")
}

// key reads the key. Errors name where it was looked for, never its value.
func (k *keyFlags) key() (string, error) {
	if k.file != "" {
		data, err := os.ReadFile(k.file)
		if err != nil {
			return "", fmt.Errorf("reading key file: %w", err)
		}
		key := strings.TrimRight(string(data), "\r\n")
		if key == "" {
			return "", fmt.Errorf("key file %s is empty", k.file)
		}
		return key, nil
	}
	key := os.Getenv(k.env)
	if key == "" {
		return "", fmt.Errorf("environment variable %s is empty; set it or use --key-file", k.env)
	}
	return key, nil
}

// exitError carries a specific exit status out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

// run adapts a subcommand to cobra through caddycmd.WrapCommandFuncForCobra,
// which logs the error and hands the status to caddycmd.Main, the one place
// that exits: an exitError gives its status, any other error status 1.
func run(fn func(cmd *cobra.Command) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
			return exitStatus(fn(cmd))
		})(cmd, args)
	}
}

// exitStatus is the status and error of a subcommand's outcome.
func exitStatus(err error) (int, error) {
	var ee exitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.code, ee.err
	default:
		return 1, err
	}
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "" || file == "-" {
		return io.ReadAll(io.LimitReader(stdin, 16<<20))
	}
	return os.ReadFile(file)
}

func signCommand() *cobra.Command {
	var keys keyFlags
	var file string
	var newUUID bool
	cmd := &cobra.Command{
		Use:   "sign [--file F] [--new-uuid]",
		Short: "Prints a message with its sign (re)computed over its body",
	}
	keys.register(cmd)
	cmd.Flags().StringVar(&file, "file", "", "message file (default: standard input)")
	cmd.Flags().BoolVar(&newUUID, "new-uuid", false, "give the message a fresh requestUUID")
	cmd.RunE = run(func(cmd *cobra.Command) error {
		signed, err := signInput(&keys, file, newUUID, cmd.InOrStdin())
		if err != nil {
			return exitError{1, err}
		}
		_, err = cmd.OutOrStdout().Write(signed)
		return err
	})
	return cmd
}

func signInput(keys *keyFlags, file string, newUUID bool, stdin io.Reader) ([]byte, error) {
	key, err := keys.key()
	if err != nil {
		return nil, err
	}
	data, err := readInput(file, stdin)
	if err != nil {
		return nil, err
	}
	uuid := ""
	if newUUID {
		uuid = protocol.NewUUID()
	}
	return protocol.Resign(data, key, uuid)
}

func verifyCommand() *cobra.Command {
	var keys keyFlags
	var file string
	var explain bool
	cmd := &cobra.Command{
		Use:   "verify [--file F] [--explain]",
		Short: "Checks a message's sign; exit status 0 when it verifies",
	}
	keys.register(cmd)
	cmd.Flags().StringVar(&file, "file", "", "message file (default: standard input)")
	cmd.Flags().BoolVar(&explain, "explain", false, "when the sign fails, find out why (case, another key, trimmed values, order, a field left out…)")
	cmd.RunE = run(func(cmd *cobra.Command) error {
		key, err := keys.key()
		if err != nil {
			return exitError{1, err}
		}
		data, err := readInput(file, cmd.InOrStdin())
		if err != nil {
			return exitError{1, err}
		}
		if explain {
			if code := explainVerify(cmd.OutOrStdout(), data, []string{key}); code != 0 {
				return exitError{code, errors.New("the sign does not verify (see above)")}
			}
			return nil
		}
		env, err := protocol.Parse(data, protocol.Limits{})
		if err != nil {
			return exitError{1, fmt.Errorf("not a valid message: %w", err)}
		}
		if err := verifyEnvelope(env, key); err != nil {
			return exitError{2, err}
		}
		fmt.Fprintf(cmd.OutOrStdout(), "ok: %s %s signature verifies\n", env.Root, env.RequestUUID)
		return nil
	})
	return cmd
}

func verifyEnvelope(env *protocol.Envelope, key string) error {
	if env.Sign == "" {
		return fmt.Errorf("%s: the head has no sign", env.Root)
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{key}); !ok {
		return fmt.Errorf("%s: the sign does not match the body with the configured key", env.Root)
	}
	return nil
}

func sendCommand() *cobra.Command {
	var keys keyFlags
	var file, url string
	var newUUID bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "send --url U --file F",
		Short: "Signs a message, posts it, verifies and prints the signed reply",
	}
	keys.register(cmd)
	cmd.Flags().StringVar(&url, "url", "", "where to post (required)")
	cmd.Flags().StringVar(&file, "file", "", "message file (required; - for standard input)")
	cmd.Flags().BoolVar(&newUUID, "new-uuid", false, "give the message a fresh requestUUID")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	cmd.RunE = run(func(cmd *cobra.Command) error {
		if url == "" || file == "" {
			return exitError{1, errors.New("--url and --file are required")}
		}
		signed, err := signInput(&keys, file, newUUID, cmd.InOrStdin())
		if err != nil {
			return exitError{1, err}
		}
		key, _ := keys.key()
		// Said first, so that "send, then look it up in the journal"
		// works even when the post fails.
		if env, err := protocol.Parse(signed, protocol.Limits{}); err == nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "sent %s requestUUID %s\n", env.Root, env.RequestUUID)
		}
		reply, err := post(cmd.Context(), url, signed, timeout)
		if err != nil {
			return exitError{1, err}
		}
		if _, err := cmd.OutOrStdout().Write(append(reply, '\n')); err != nil {
			return err
		}
		return judgeReply(cmd.ErrOrStderr(), reply, key)
	})
	return cmd
}

// post sends one message and returns the reply body.
func post(ctx context.Context, url string, body []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/xml; charset=UTF-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return reply, fmt.Errorf("HTTP %d from %s", resp.StatusCode, url)
	}
	return reply, nil
}

// judgeReply reads a reply with the one platform-reply reader (protocol.ReadReply, shared
// with callback delivery and the simulator), says on stderr whether its sign verified, and
// turns it into an exit status: 0 resultFlag=true with a verifying sign;
// 2 a sign that does not verify, or an acceptance without a sign (our
// sidecar signs every answer it computes); 3 a refusal. A refusal may be
// unsigned: the sidecar refuses an unverified request with a fixed,
// unsigned reply, which says so rather than failing obscurely.
func judgeReply(stderr io.Writer, reply []byte, key string) error {
	r, err := protocol.ReadReply(reply, protocol.Limits{}, []string{key})
	if err != nil {
		return exitError{2, fmt.Errorf("the reply is not a valid message: %w", err)}
	}
	fmt.Fprintf(stderr, "reply %s requestUUID %s: %s\n", r.Root, r.RequestUUID, describeReplySignature(r.Signature))
	switch {
	case r.Signature == protocol.SignatureMismatch:
		return exitError{2, fmt.Errorf("reply: %s: the sign does not match the body with the configured key", r.Root)}
	case r.Flag == protocol.FlagTrue && r.Signature == protocol.SignatureUnsigned:
		return exitError{2, fmt.Errorf("reply: %s says resultFlag=true but is unsigned", r.Root)}
	case r.Flag == protocol.FlagTrue:
		return nil
	case r.Signature == protocol.SignatureUnsigned:
		return exitError{3, fmt.Errorf("the reply is unsigned and says resultFlag=%s: %s", r.FlagText, r.Message)}
	default:
		return exitError{3, fmt.Errorf("the reply verifies but says resultFlag=%s: %s", r.FlagText, r.Message)}
	}
}

func describeReplySignature(s protocol.ReplySignature) string {
	switch s {
	case protocol.SignatureVerified:
		return "signature verified"
	case protocol.SignatureUnsigned:
		return "unsigned (the reply has an empty sign)"
	default:
		return "signature does NOT verify with the configured key"
	}
}
