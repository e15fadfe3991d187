package simulator

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// builtin holds the messages the simulator sends: copies of the signed
// sample messages, with an empty head (the simulator fills in requestUUID
// and sign) and the sample policy number, which it replaces by the policy
// the run obtains. They are embedded so the installed binary needs no
// repository.
//
//go:embed templates/*.xml
var builtin embed.FS

// Template file names, also the names looked up in Config.Templates. The
// invoice request has one file per InvoiceType.
const (
	tmplInsure    = "insureRequest.xml"
	tmplCorrect   = "correctRequest.xml"
	tmplClaim     = "claimRequest.xml"
	tmplSurrender = "surrendRequest.xml"
)

func tmplInvoice(invoiceType string) string { return "invoiceRequest." + invoiceType + ".xml" }

// errNoPolicyField: a template that must name the policy has no element
// to hold it.
var errNoPolicyField = errors.New("no policyno element in the body")

// message is a request body ready to be signed and sent.
type message struct {
	root string
	body []protocol.Element
}

// messages are the five requests of a run.
type messages struct {
	insure, correct, claim, invoice, surrender message
}

// loadTemplates reads the five templates, preferring files in override.
func loadTemplates(override fs.FS, invoiceType string) (*messages, error) {
	var m messages
	for _, t := range []struct {
		file, root string
		dst        *message
		policy     bool
	}{
		{tmplInsure, "insureRequest", &m.insure, false},
		{tmplCorrect, "correctRequest", &m.correct, true},
		{tmplClaim, "claimRequest", &m.claim, true},
		{tmplInvoice(invoiceType), "invoiceRequest", &m.invoice, true},
		{tmplSurrender, "surrendRequest", &m.surrender, true},
	} {
		msg, err := loadTemplate(override, t.file, t.root)
		if err != nil {
			return nil, err
		}
		if t.policy && !hasPolicyField(msg.body) {
			return nil, fmt.Errorf("template %s: %w", t.file, errNoPolicyField)
		}
		*t.dst = msg
	}
	return &m, nil
}

func loadTemplate(override fs.FS, file, root string) (message, error) {
	data, err := readTemplate(override, file)
	if err != nil {
		return message{}, err
	}
	env, err := protocol.Parse(data, protocol.Limits{})
	if err != nil {
		return message{}, fmt.Errorf("template %s: %w", file, err)
	}
	if env.Root != root || env.Type != protocol.RequestMessage {
		return message{}, fmt.Errorf("template %s: root is %s (%s), want the request %s", file, env.Root, env.Type, root)
	}
	return message{root: root, body: elementsOf(env.Body)}, nil
}

func readTemplate(override fs.FS, file string) ([]byte, error) {
	if override != nil {
		data, err := fs.ReadFile(override, file)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("template %s: %w", file, err)
		}
	}
	return builtin.ReadFile("templates/" + file)
}

// elementsOf turns parsed body children into an element tree. A leaf's
// text is its decoded character data (CDATA unwrapped, not trimmed), the
// value it contributes to the signature; white space between elements is
// dropped, as it is from the signature.
func elementsOf(n *xmlquery.Node) []protocol.Element {
	var out []protocol.Element
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != xmlquery.ElementNode {
			continue
		}
		el := protocol.Element{Name: c.Data}
		if hasElementChild(c) {
			el.Children = elementsOf(c)
		} else {
			el.Text = charData(c)
		}
		out = append(out, el)
	}
	return out
}

func hasElementChild(n *xmlquery.Node) bool {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode {
			return true
		}
	}
	return false
}

func charData(n *xmlquery.Node) string {
	var s string
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.TextNode || c.Type == xmlquery.CharDataNode {
			s += c.Data
		}
	}
	return s
}

// isPolicyField reports whether a top-level body element holds the policy
// number. The platform spells it policyno in requests; policyNo and the
// spec's typo polycyno occur too.
func isPolicyField(name string) bool {
	return name == "policyno" || name == "policyNo" || name == "polycyno"
}

func hasPolicyField(body []protocol.Element) bool {
	for _, el := range body {
		if isPolicyField(el.Name) && len(el.Children) == 0 {
			return true
		}
	}
	return false
}

// withPolicy returns a copy of body with the policy number set.
func withPolicy(body []protocol.Element, policyNo string) []protocol.Element {
	out := make([]protocol.Element, len(body))
	copy(out, body)
	for i := range out {
		if isPolicyField(out[i].Name) && len(out[i].Children) == 0 {
			out[i].Text = policyNo
		}
	}
	return out
}

// leaf finds a leaf by path in an element tree ("" when absent).
func leaf(body []protocol.Element, path ...string) string {
	for i, name := range path {
		found := false
		for _, el := range body {
			if el.Name != name {
				continue
			}
			if i == len(path)-1 {
				return el.Text
			}
			body, found = el.Children, true
			break
		}
		if !found {
			return ""
		}
	}
	return ""
}
