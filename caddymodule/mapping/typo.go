package mapping

import (
	"strconv"
	"strings"

	"github.com/antchfx/xmlquery"
)

// This file catches typos in optional request rows. A required row with a
// mistyped path fails on the first message; an optional one silently maps
// nothing. Two checks look for a near spelling (the same parent, the last
// segment equal but for letter case, or within two edits): at load, among
// the file's other element paths (rows, aliases, ignore: entries), and in
// CheckSamples, among the elements of sample messages.

// optionalSpellings calls fn for every spelling (canonical path, then
// aliases) of each optional request row with an XML source, rows of
// repeated items included (paths relative to the body, no [n]).
func optionalSpellings(rules *Rules, prefix string, fn func(row *Row, canonical string, spellings []string)) {
	for _, row := range rules.Rows() {
		if len(row.src) == 0 {
			continue
		}
		path := joinPrefix(prefix, row.src)
		if row.Fields != nil {
			optionalSpellings(row.Fields, path, fn)
			continue
		}
		if row.Required {
			continue
		}
		spellings := []string{path}
		parent := joinPrefix(prefix, row.src[:len(row.src)-1])
		for _, a := range row.aliases {
			spellings = append(spellings, joinPrefix(parent, []string{a}))
		}
		fn(row, path, spellings)
	}
}

// nearSpelling returns the first candidate that is a near spelling of
// path: the same parent, a last segment that differs only in letter case
// or by at most two edits (both at least five characters long).
func nearSpelling(path string, candidates []string) string {
	dir, name := splitLast(path)
	for _, c := range candidates {
		cdir, cname := splitLast(c)
		if c == path || cdir != dir {
			continue
		}
		if strings.EqualFold(name, cname) ||
			(min(len(name), len(cname)) >= 5 && editDistance(name, cname) <= 2) {
			return c
		}
	}
	return ""
}

// caseSpelling returns the first candidate spelled as path but for
// letter case.
func caseSpelling(path string, candidates []string) string {
	for _, c := range candidates {
		if c != path && strings.EqualFold(c, path) {
			return c
		}
	}
	return ""
}

func splitLast(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// paths lists every element spelling the shape knows with the line
// that declared it, and the canonical path each spelling belongs to.
func (node *shapeNode) paths(out *[]shapePath) {
	for _, k := range node.kids {
		full := k.name
		if node.path != "" {
			full = node.path + "/" + k.name
		}
		if k.leaf {
			*out = append(*out, shapePath{spelling: full, canonical: k.path, line: k.line, ignored: k.ignored})
		}
		if k.node != nil {
			k.node.paths(out)
		}
	}
}

type shapePath struct {
	spelling, canonical string
	line                int
	ignored             bool
}

// typoWarnings warns about optional rows whose path is a near spelling of
// another element path of the same file: the sample-free check `caddy
// validate` runs. Against an ignore: entry any near spelling counts (the
// row probably meant the element the file ignores); against another row
// or alias only a difference in letter case does, as two mapped fields may
// well be spelled alike (address, addressee).
func (p *parser) typoWarnings(rules *Rules, s *shape) {
	if rules == nil || s == nil {
		return
	}
	var all []shapePath
	s.root.paths(&all)
	optionalSpellings(rules, "", func(row *Row, canonical string, spellings []string) {
		var ignored, mapped []string
		lines := map[string]int{}
		for _, sp := range all {
			switch {
			case sp.canonical == canonical:
				continue
			case sp.ignored:
				ignored = append(ignored, sp.spelling)
			default:
				mapped = append(mapped, sp.spelling)
			}
			lines[sp.spelling] = sp.line
		}
		for _, sp := range spellings {
			near := nearSpelling(sp, ignored)
			if near == "" {
				near = caseSpelling(sp, mapped)
			}
			if near != "" {
				p.warns = append(p.warns, &LoadError{File: p.file, Line: row.Line,
					Msg: "row xml \"" + sp + "\" is a near spelling of \"" + near + "\" (line " + strconv.Itoa(lines[near]) + "); did you mean \"" + near + "\"?"})
				return
			}
		}
	})
}

// CheckSamples warns about optional request rows whose path (or alias)
// matches no element of any of the sample bodies while a near spelling
// does: "file:line: row xml "…" matches no element of the samples; did you
// mean "…"?". Samples are request bodies (requestBody elements) of this
// mapping's message.
func (m *Inbound) CheckSamples(bodies []*xmlquery.Node) []*LoadError {
	if m == nil || m.Request == nil || len(bodies) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var present []string
	for _, b := range bodies {
		elementPaths(b, "", seen, &present)
	}
	var out []*LoadError
	optionalSpellings(m.Request, "", func(row *Row, _ string, spellings []string) {
		for _, sp := range spellings {
			if seen[sp] {
				return
			}
		}
		for _, sp := range spellings {
			if near := nearSpelling(sp, present); near != "" {
				out = append(out, &LoadError{File: m.File, Line: row.Line,
					Msg: "row xml \"" + sp + "\" matches no element of the samples; did you mean \"" + near + "\"?"})
				return
			}
		}
	})
	return out
}

// elementPaths records the path (no [n]) of every element under el.
func elementPaths(el *xmlquery.Node, prefix string, seen map[string]bool, out *[]string) {
	for c := el.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != xmlquery.ElementNode {
			continue
		}
		p := c.Data
		if prefix != "" {
			p = prefix + "/" + c.Data
		}
		if !seen[p] {
			seen[p] = true
			*out = append(*out, p)
		}
		elementPaths(c, p, seen, out)
	}
}
