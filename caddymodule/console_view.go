package caddymodule

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// pageData is what every console page gets: the layout's needs and the
// page's own view in Content.
type pageData struct {
	Base     string // the console's mount point, for links
	Title    string
	Nav      string // the navigation item to highlight
	Query    string // the search box's value
	Masked   bool   // personal data is masked in the bodies shown
	Operator string // who is looking, when the auth layer says
	Flash    string // the outcome of the last action
	Content  any
}

// consoleFuncs are the helpers the templates use.
var consoleFuncs = template.FuncMap{
	"duration": humanDuration,
	"time":     displayTime,
	// A payment time is reported in whole seconds: show no false precision.
	"timeSeconds": func(t time.Time) string { return t.In(shanghai).Format("2006-01-02 15:04:05") },
	"timePtr":     func(t *time.Time) string { return displayTimePtr(t) },
	"pathEscape":  url.PathEscape,
	"stateClass":  stateClass,
	"label":       messageLabel,
}

// render writes a page. Templates are executed into a buffer first, so a
// template error is a clean 500, not half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, data pageData) error {
	data.Masked = !c.ShowPersonalData
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		c.logger.Error("console: rendering a page", zap.String("page", name), zap.Error(err))
		http.Error(w, "the console could not render this page", http.StatusInternalServerError)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// errorView is the content of the error page.
type errorView struct {
	Status  int
	Heading string
	Detail  string
}

// fail answers with the error page.
func (c *Console) fail(w http.ResponseWriter, route consoleRoute, status int, heading, detail string) error {
	return c.render(w, status, "error", pageData{Base: route.base, Title: heading,
		Content: errorView{Status: status, Heading: heading, Detail: detail}})
}

// storeFailed answers a store that could not be read: the operator should
// try again, not think the policy has no history.
func (c *Console) storeFailed(w http.ResponseWriter, route consoleRoute, err error) error {
	c.logger.Error("console: reading the store", zap.Error(err))
	return c.fail(w, route, http.StatusServiceUnavailable, "The store could not be read",
		"Try again in a moment. The sidecar's log has the details.")
}

// redirect answers a form or a search with 303 See Other to a console path.
func redirect(w http.ResponseWriter, r *http.Request, route consoleRoute, path string) error {
	http.Redirect(w, r, route.base+path, http.StatusSeeOther)
	return nil
}

// bodyView is one body shown on a page, indented for reading.
type bodyView struct {
	Title string
	Text  string
}

// bodies lists the non-empty bodies among pairs of title and content.
func bodies(pairs ...any) []bodyView {
	var out []bodyView
	for i := 0; i+1 < len(pairs); i += 2 {
		b, _ := pairs[i+1].([]byte)
		if text := prettyBody(b); text != "" {
			out = append(out, bodyView{Title: pairs[i].(string), Text: text})
		}
	}
	return out
}

// bodyHidden stands in for a body that cannot be masked: no mapping knows
// its fields, so it may hold personal data in any element.
var bodyHidden = []byte("(hidden: no mapping describes this message, so its personal data cannot be masked; " +
	"the console's show_personal_data option shows it)")

// masked is an exchange as the console shows it: with the personal data of
// its mapping masked, unless the operator configured show_personal_data.
// It is the journal's own masker (mask_personal_data), not a second policy.
func (c *Console) masked(e store.JournalEntry) store.JournalEntry {
	if c.ShowPersonalData {
		return e
	}
	m, ok := c.app.maskers[e.Message]
	if !ok {
		e.RequestXML, e.CoreRequest, e.CoreReply = hideIfAny(e.RequestXML), hideIfAny(e.CoreRequest), hideIfAny(e.CoreReply)
		return e
	}
	e.RequestXML, e.ReplyXML = m.XML(e.RequestXML), m.XML(e.ReplyXML)
	e.CoreRequest, e.CoreReply = m.JSON(e.CoreRequest), m.JSON(e.CoreReply)
	return e
}

func hideIfAny(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	return bodyHidden
}

// messageLabels name the protocol's messages the way the spec's chapters
// do, for people who know the business, not the element names.
var messageLabels = map[string]string{
	"insureRequest":       "Insure · 投保",
	paymentStep:           "Premium paid at the core · 缴费",
	"surrendRequest":      "Surrender · 退保",
	"correctRequest":      "Correct · 批改",
	"claimRequest":        "Claim · 理赔",
	"invoiceRequest":      "Invoice · 申请发票",
	"queryPolicyRequest":  "Payment callback · 保单缴纳情况回执",
	"queryInvoiceRequest": "Invoice callback · 发票信息回执",
	"querySurrendRequest": "Surrender callback · 退保状态回执",
}

// messageLabel is a message's label, or its root element when it has none.
func messageLabel(root string) string {
	if l, ok := messageLabels[root]; ok {
		return l
	}
	return root
}

// stateClass is the CSS class of an outcome or a state: good, waiting or
// bad at a glance.
func stateClass(s string) string {
	switch s {
	case "ok", "replay", "paid", string(delivery.StateDelivered), string(delivery.OutcomeAccepted), string(store.StateCompleted), string(store.StateReleased):
		return "good"
	case string(delivery.StatePending), "in_progress", "":
		return "wait"
	default:
		return "bad"
	}
}

func displayTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return displayTime(*t)
}

// barChart is a horizontal bar chart drawn as inline SVG by the server:
// no script, no library, readable with JavaScript off.
type barChart struct {
	Width, Height int
	Bars          []chartBar
}

type chartBar struct {
	Label      string
	Count      int64
	Class      string
	X, Y, W    int // the bar's left, top and width
	TextY      int // baseline of the label and the count
	CountX     int
	LabelWidth int
}

// Chart geometry, in SVG user units (pixels at 1:1).
const (
	chartLabelWidth = 150
	chartBarMax     = 320
	chartRow        = 28
	chartBarHeight  = 18
)

// chartRowData is one bar's data.
type chartRowData struct {
	Label string
	Count int64
	Class string
}

// newBarChart lays out rows, the longest bar for the largest count.
func newBarChart(rows []chartRowData) barChart {
	var most int64
	for _, r := range rows {
		most = max(most, r.Count)
	}
	ch := barChart{Width: chartLabelWidth + chartBarMax + 70, Height: max(len(rows), 1) * chartRow}
	for i, r := range rows {
		w := 0
		if most > 0 {
			w = int(int64(chartBarMax) * r.Count / most)
		}
		if r.Count > 0 {
			w = max(w, 2) // a count of one is still visible
		}
		y := i * chartRow
		ch.Bars = append(ch.Bars, chartBar{Label: r.Label, Count: r.Count, Class: r.Class,
			X: chartLabelWidth, Y: y + (chartRow-chartBarHeight)/2, W: w, TextY: y + chartRow/2 + 5,
			CountX: chartLabelWidth + w + 8, LabelWidth: chartLabelWidth - 10})
	}
	return ch
}
