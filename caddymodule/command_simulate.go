package caddymodule

import (
	"errors"
	"io/fs"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/caddy-gongbao/gongbao/caddymodule/simulator"
)

// simulateCommand is `caddy gongbao simulate`: the platform simulator.
func simulateCommand() *cobra.Command {
	var keys keyFlags
	var cfg simulator.Config
	var templates string
	var pay bool
	cmd := &cobra.Command{
		Use:   "simulate --url U [--callback-listen ADDR] [--timeout 60s] [--invoice-type 1|2|3] [--pay=false]",
		Short: "Acts as 工保网 against a running sidecar and core: a policy's whole lifecycle",
		Long: `
Plays 工保网 against a running sidecar and its core system: insure, open the
payment link (yeepayurl), receive the payment callback (queryPolicyRequest,
which names the policy), correct, claim, invoice, receive the invoice
callback, surrender, receive the surrender callback.

Every request gets a fresh requestUUID and is signed with the key; every
reply must parse, verify and say resultFlag=true. Callbacks are received on
--callback-listen, which the sidecar's callbacks base must point at (e.g.
GONGBAO_CALLBACK_BASE=http://127.0.0.1:7070); each must verify and belong to
the run's policy, and is answered like the platform does (a signed
queryXxxResponse, resultFlag=false with 验签失败 when it does not verify).

A transcript is printed as the run goes; personal data in it is masked and
the key is never printed. --pay=false leaves the payment link to a human
and only waits for the payment callback (raise --timeout accordingly).
--templates DIR replaces built-in messages by files of the same name:
insureRequest.xml, correctRequest.xml, claimRequest.xml,
invoiceRequest.<1|2|3>.xml, surrendRequest.xml (their policyno is replaced
by the run's policy; head values are ignored).

Exit status: 0 the lifecycle completed; 1 usage, key or listener error;
2 a reply or callback signature does not verify; 3 a refusal
(resultFlag=false, or the surrender not settled); 4 another deviation
(no callback within --timeout, a callback for the wrong policy, a transport
or HTTP error, a malformed message).`,
	}
	keys.register(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "the sidecar's platform endpoint, e.g. http://127.0.0.1:8080/gongbao (required)")
	f.StringVar(&cfg.CallbackListen, "callback-listen", simulator.DefaultCallbackListen, "address the callback receiver listens on")
	f.DurationVar(&cfg.Timeout, "timeout", simulator.DefaultTimeout, "limit for each exchange and for each callback to arrive")
	f.StringVar(&cfg.InvoiceType, "invoice-type", simulator.DefaultInvoiceType, "InvoiceType requested: 1 electronic, 2 paper, 3 special paper")
	f.BoolVar(&pay, "pay", true, "open the payment link; false waits for someone else to pay")
	f.StringVar(&templates, "templates", "", "folder of message templates replacing the built-in ones")
	cmd.RunE = run(func(cmd *cobra.Command) error {
		if cfg.URL == "" {
			return exitError{1, errors.New("--url is required")}
		}
		key, err := keys.key()
		if err != nil {
			return exitError{1, err}
		}
		if templates != "" {
			if _, err := os.Stat(templates); err != nil {
				return exitError{1, err}
			}
		}
		run := cfg // flags stay untouched, so the command can run twice
		run.Key, run.NoPay, run.Out = key, !pay, cmd.OutOrStdout()
		run.Templates = templatesDir(templates)
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
		defer stop()
		_, err = simulator.Run(ctx, run)
		return simulateStatus(err)
	})
	return cmd
}

func templatesDir(dir string) fs.FS {
	if dir == "" {
		return nil
	}
	return os.DirFS(dir)
}

// simulateStatus maps a run's error to the exit status documented above.
func simulateStatus(err error) error {
	var dev *simulator.Deviation
	switch {
	case err == nil:
		return nil
	case errors.Is(err, simulator.ErrBadSignature):
		return exitError{2, err}
	case errors.Is(err, simulator.ErrRefused):
		return exitError{3, err}
	case errors.As(err, &dev):
		return exitError{4, err}
	default:
		return exitError{1, err}
	}
}
