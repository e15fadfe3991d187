package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// adminClient talks to the running sidecar's admin API.
type adminClient struct {
	address string
	json    bool
}

func (c *adminClient) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&c.address, "address", "localhost:2019", "the admin API's address")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print the admin API's JSON (for machines) instead of text")
}

// do calls the admin API and prints its answer to out: as text through
// view, or as indented JSON with --json.
func (c *adminClient) do(out io.Writer, method, path string, body []byte, view textView) error {
	base := c.address
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequest(method, strings.TrimRight(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return exitError{1, err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return exitError{1, fmt.Errorf("is the sidecar running? %w", err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return exitError{1, err}
	}
	if resp.StatusCode != http.StatusOK {
		return exitError{1, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))}
	}
	if !c.json {
		return view(out, data)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, data, "", "  ") != nil {
		pretty.Write(data)
	}
	_, err = fmt.Fprintln(out, strings.TrimSpace(pretty.String()))
	return err
}

func deliveriesCommand() *cobra.Command {
	var admin adminClient
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "Lists, shows and retries callback deliveries (through the admin API)",
	}
	admin.register(cmd)

	var state string
	var limit int
	var after int64
	list := &cobra.Command{Use: "list [--state pending|delivered|dead]", Short: "Lists deliveries"}
	list.Flags().StringVar(&state, "state", "", "only deliveries in this state")
	list.Flags().IntVar(&limit, "limit", 50, "at most this many")
	list.Flags().Int64Var(&after, "after", 0, "page after this delivery id")
	list.RunE = run(func(cmd *cobra.Command) error {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if state != "" {
			q.Set("state", state)
		}
		if after > 0 {
			q.Set("after", strconv.FormatInt(after, 10))
		}
		return admin.do(cmd.OutOrStdout(), http.MethodGet, "/gongbao/deliveries?"+q.Encode(), nil, deliveryListText)
	})

	show := &cobra.Command{Use: "show <id>", Short: "Shows a delivery with every attempt", Args: cobra.ExactArgs(1)}
	show.RunE = func(cmd *cobra.Command, args []string) error {
		return run(func(cmd *cobra.Command) error {
			return admin.do(cmd.OutOrStdout(), http.MethodGet, "/gongbao/deliveries/"+url.PathEscape(args[0]), nil, deliveryText)
		})(cmd, args)
	}

	retry := &cobra.Command{Use: "retry <id>", Short: "Delivers a dead letter again (same requestUUID)", Args: cobra.ExactArgs(1)}
	retry.RunE = func(cmd *cobra.Command, args []string) error {
		return run(func(cmd *cobra.Command) error {
			return admin.do(cmd.OutOrStdout(), http.MethodPost, "/gongbao/deliveries/"+url.PathEscape(args[0])+"/retry", []byte("{}"), deliveryText)
		})(cmd, args)
	}

	stats := &cobra.Command{Use: "stats", Short: "Counts deliveries by state"}
	stats.RunE = run(func(cmd *cobra.Command) error {
		return admin.do(cmd.OutOrStdout(), http.MethodGet, "/gongbao/deliveries/stats", nil, deliveryStatsText)
	})
	cmd.AddCommand(list, show, retry, stats)
	return cmd
}

func journalCommand() *cobra.Command {
	var admin adminClient
	var uuid, policy, proposal string
	var limit int
	cmd := &cobra.Command{
		Use:   "journal [--request-uuid U | --policy P | --proposal N]",
		Short: "Shows the recorded platform exchanges (through the admin API)",
	}
	admin.register(cmd)
	cmd.Flags().StringVar(&uuid, "request-uuid", "", "the platform request's requestUUID")
	cmd.Flags().StringVar(&policy, "policy", "", "a policy number")
	cmd.Flags().StringVar(&proposal, "proposal", "", "a proposal number")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many")
	cmd.RunE = run(func(cmd *cobra.Command) error {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		for key, val := range map[string]string{"request_uuid": uuid, "policy_no": policy, "proposal_no": proposal} {
			if val != "" {
				q.Set(key, val)
			}
		}
		if len(q) == 1 {
			return exitError{1, fmt.Errorf("give --request-uuid, --policy or --proposal")}
		}
		return admin.do(cmd.OutOrStdout(), http.MethodGet, "/gongbao/journal?"+q.Encode(), nil, journalText)
	})
	return cmd
}
