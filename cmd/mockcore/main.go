// Command mockcore runs the reference insurer core system (package internal/mockcore)
// as a standalone HTTP server, for demos and end-to-end tests of the
// gongbao sidecar.
//
//	mockcore -listen 127.0.0.1:9000 -events http://127.0.0.1:8081
//
// Open the paymentUrl of a proposal to pay it; the core then issues the
// policy and POSTs a policy-paid event to {events}/events/policy-paid.
//
// Like package core, it must not import Caddy nor any package of the
// sidecar.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mockcore:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mockcore", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	publicURL := fs.String("public-url", "", "base URL of paymentUrl/policyUrl (default http://<listen>)")
	events := fs.String("events", "http://127.0.0.1:8081", `base URL events are POSTed to (<events>/events/<name>); several, comma-separated, fail over in turn; "" disables`)
	phone := fs.String("insurer-phone", "95500", "insurer contact phone returned on endorsements")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *publicURL == "" {
		*publicURL = "http://" + *listen
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c := mockcore.New(mockcore.Config{
		PublicURL:    *publicURL,
		EventsURL:    *events,
		InsurerPhone: *phone,
		Logger:       logger,
	})
	defer c.Close()

	srv := &http.Server{
		Addr:              *listen,
		Handler:           c.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("mockcore listening", "listen", *listen, "public_url", *publicURL, "events", *events)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
