package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/antchfx/xmlquery"
	"github.com/spf13/cobra"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// mappingCheckCommand is `mapping check`: typo help for optional rows.
func mappingCheckCommand() *cobra.Command {
	var dir, samples string
	cmd := &cobra.Command{
		Use:   "check [--mappings DIR] [--samples DIR]",
		Short: "Warns about optional request rows whose path is probably mistyped",
		Long: `
Loads the mappings and warns, with file:line, about optional request rows
whose xml path (or an alias) matches no element of any sample message of
that mapping while a near spelling does (the same parent; the last segment
differs in letter case only, or by at most two edits):

  mappings/insure.yaml:94: row xml "dateInfo/startdate" matches no element of the samples; did you mean "dateInfo/startDate"?

A required row needs no such check: the first message refuses it. Samples
are the .xml files in --samples (default testdata/messages, if present)
whose root is the mapping's message. The load warnings (deprecated forms,
near spellings among the file's own paths, what caddy validate logs) are
printed too.

Exit status: 0 no warning; 1 usage, file or mapping error; 2 warnings.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&dir, "mappings", "mappings", "folder of mapping files")
	cmd.Flags().StringVar(&samples, "samples", "", "folder of sample messages (default testdata/messages, if present)")
	cmd.RunE = run(func(cmd *cobra.Command) error {
		return runMappingCheck(cmd.OutOrStdout(), dir, samples, cmd.Flags().Changed("samples"))
	})
	return cmd
}

// runMappingCheck prints the warnings; an exitError with code 2 when any.
func runMappingCheck(w io.Writer, dir, samples string, samplesGiven bool) error {
	var loadWarnings strings.Builder
	set, err := dryRunLoadSet(dir, &loadWarnings)
	if err != nil {
		return exitError{1, err}
	}
	io.WriteString(w, loadWarnings.String())
	n := len(set.Warnings)
	if !samplesGiven {
		samples = filepath.Join("testdata", "messages")
		if _, err := os.Stat(samples); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(w, "no --samples and no testdata/messages: rows are checked against the mapping files only")
			samples = ""
		}
	}
	if samples != "" {
		bodies, err := readSampleBodies(samples)
		if err != nil {
			return exitError{1, err}
		}
		for _, msg := range slices.Sorted(maps.Keys(set.Inbound)) {
			for _, warn := range set.Inbound[msg].CheckSamples(bodies[msg]) {
				fmt.Fprintln(w, "warning:", warn)
				n++
			}
		}
	}
	if n > 0 {
		return exitError{2, fmt.Errorf("%d warning(s)", n)}
	}
	fmt.Fprintln(w, "no warnings")
	return nil
}

// readSampleBodies parses every .xml file of dir (unsigned samples are
// fine: nothing is verified) and groups the bodies by root element.
// Files that are not messages are skipped.
func readSampleBodies(dir string) (map[string][]*xmlquery.Node, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]*xmlquery.Node{}
	for _, e := range entries {
		if e.IsDir() || !strings.EqualFold(filepath.Ext(e.Name()), ".xml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		env, err := protocol.Parse(data, protocol.Limits{})
		if err != nil || env.Body == nil {
			continue
		}
		out[env.Root] = append(out[env.Root], env.Body)
	}
	return out, nil
}
