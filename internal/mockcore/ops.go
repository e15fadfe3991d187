package mockcore

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Layouts of the core's answers.
const (
	// periodLayout is the platform's date-time shape, which the core also
	// uses for the human-readable insurancePeriod ("起期 至 止期").
	periodLayout = "2006-01-02 15:04:05"
	// payTypeCorporateBanking is the only payment method the platform
	// knows: 3 = 企业网银.
	payTypeCorporateBanking = "3"
)

type proposal struct {
	no          string
	createdAt   time.Time
	applicant   party
	projectName string
	premium     string
	amount      string
	endorseText string
	policyNo    string // set once paid
	paidAt      time.Time
}

type policy struct {
	no          string
	proposalNo  string
	holder      string
	insured     party
	projectName string
	endorseText string
	start, end  time.Time
	issuedAt    time.Time
	endorsed    int
	surrendered bool
}

type party struct {
	Name     string `json:"name"`
	Mobile   string `json:"mobile"`
	IDNumber string `json:"idNumber"`
}

func (p *policy) period() string {
	return p.start.Format(periodLayout) + " 至 " + p.end.Format(periodLayout)
}

func (c *Core) policyURL(no string) string  { return c.cfg.PublicURL + "/policies/" + no + ".pdf" }
func (c *Core) invoiceURL(no string) string { return c.cfg.PublicURL + "/invoices/" + no + ".pdf" }
func (c *Core) paymentURL(no string) string { return c.cfg.PublicURL + "/pay/" + no }

// number builds a document number: prefix, issue date, sequence.
func (c *Core) number(prefix string, at time.Time) string {
	return fmt.Sprintf("%s%s%06d", prefix, at.Format("20060102"), c.nextSeq())
}

// livePolicy finds an issued policy that has not been surrendered; callers
// hold c.mu.
func (c *Core) livePolicy(no string) (*policy, *result) {
	p, ok := c.policies[no]
	if !ok {
		r := refuse(http.StatusUnprocessableEntity, "保单 %s 不存在或未生效", no)
		return nil, &r
	}
	if p.surrendered {
		r := refuse(http.StatusUnprocessableEntity, "保单 %s 已退保，不能再办理业务", no)
		return nil, &r
	}
	return p, nil
}

// ---- POST /v1/proposals

type proposalRequest struct {
	Applicant party `json:"applicant"`
	Project   struct {
		Name           string `json:"name"`
		Type           string `json:"type"` // ProjectType, sent by newer platform versions (optional)
		BidSectionCode string `json:"bidSectionCode"`
		Tenderee       struct {
			Name    string `json:"name"`
			Code    string `json:"code"`
			Address string `json:"address"`
			Phone   string `json:"phone"`
		} `json:"tenderee"`
	} `json:"project"`
	Policy struct {
		SumPremium  json.RawMessage `json:"sumPremium"` // number or string, checked by money
		SumAmount   json.RawMessage `json:"sumAmount"`
		EndorseText string          `json:"endorseText"`
	} `json:"policy"`
	// Period is dateInfo/startDate and dateInfo/endDate, sent by newer
	// platform versions (optional, RFC 3339).
	Period struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"period"`
}

type proposalAnswer struct {
	answer
	ProposalNo  string `json:"proposalNo"`
	PaymentURL  string `json:"paymentUrl"`
	ProcessedAt string `json:"processedAt"`
}

func (c *Core) createProposal(body []byte) result {
	var req proposalRequest
	if r, ok := decode(body, &req); !ok {
		return r
	}
	var v checker
	v.required("applicant.name", req.Applicant.Name)
	v.required("applicant.mobile", req.Applicant.Mobile)
	v.required("applicant.idNumber", req.Applicant.IDNumber)
	v.required("project.name", req.Project.Name)
	v.required("project.bidSectionCode", req.Project.BidSectionCode)
	v.required("project.tenderee.name", req.Project.Tenderee.Name)
	v.required("project.tenderee.code", req.Project.Tenderee.Code)
	premium := v.money("policy.sumPremium", req.Policy.SumPremium)
	amount := v.money("policy.sumAmount", req.Policy.SumAmount)
	v.required("policy.endorseText", req.Policy.EndorseText)
	if !v.ok() {
		return *v.failure
	}
	now := c.now()
	p := &proposal{
		no:          c.number("TB", now),
		createdAt:   now,
		applicant:   req.Applicant,
		projectName: req.Project.Name,
		premium:     premium,
		amount:      amount,
		endorseText: req.Policy.EndorseText,
	}
	c.proposals[p.no] = p
	c.effects[OpProposals]++
	return result{status: http.StatusCreated, body: proposalAnswer{
		answer:      answer{Accepted: true, Message: "投保成功"},
		ProposalNo:  p.no,
		PaymentURL:  c.paymentURL(p.no),
		ProcessedAt: now.Format(time.RFC3339),
	}}
}

// ---- GET /pay/{proposalNo}

type paymentAnswer struct {
	answer
	ProposalNo string `json:"proposalNo"`
	PolicyNo   string `json:"policyNo"`
	PolicyURL  string `json:"policyUrl"`
	PaidAt     string `json:"paidAt"`
}

// pay plays the payment page: the first visit pays the premium and issues
// the policy; later visits show the same receipt without a second effect.
func (c *Core) pay(w http.ResponseWriter, r *http.Request) {
	no := r.PathValue("proposalNo")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[OpPayments]++
	p, ok := c.proposals[no]
	if !ok {
		writeJSON(w, http.StatusNotFound, answer{Message: "投保单 " + no + " 不存在"})
		return
	}
	if p.policyNo == "" {
		c.issue(p)
	}
	writeJSON(w, http.StatusOK, paymentAnswer{
		answer:     answer{Accepted: true, Message: "支付成功"},
		ProposalNo: p.no,
		PolicyNo:   p.policyNo,
		PolicyURL:  c.policyURL(p.policyNo),
		PaidAt:     p.paidAt.Format(time.RFC3339),
	})
}

// issue turns a paid proposal into a policy. The period follows the spec's
// rule for the policy document: start = application date + 30 days,
// end = start + 90 days.
func (c *Core) issue(p *proposal) {
	now := c.now()
	day := time.Date(p.createdAt.Year(), p.createdAt.Month(), p.createdAt.Day(), 0, 0, 0, 0, CST)
	start := day.AddDate(0, 0, 30)
	pol := &policy{
		no:          c.number("BD", now),
		proposalNo:  p.no,
		holder:      p.applicant.Name,
		projectName: p.projectName,
		endorseText: p.endorseText,
		start:       start,
		end:         start.AddDate(0, 0, 90).Add(-time.Second),
		issuedAt:    now,
	}
	p.policyNo, p.paidAt = pol.no, now
	c.policies[pol.no] = pol
	c.effects[OpPayments]++
	id := newEventID()
	c.emit(EventPolicyPaid, id, PolicyPaid{
		EventID:    id,
		PolicyNo:   pol.no,
		ProposalNo: p.no,
		PayType:    payTypeCorporateBanking,
		PaidAt:     now.Format(time.RFC3339),
		PolicyURL:  c.policyURL(pol.no),
	})
}

// ---- POST /v1/surrenders

type surrenderRequest struct {
	PolicyNo string `json:"policyNo"`
	Reason   string `json:"reason"`
	Refund   struct {
		BankName    string `json:"bankName"`
		AccountName string `json:"accountName"`
		AccountNo   string `json:"accountNo"`
	} `json:"refund"`
}

type plainAnswer struct {
	answer
	ProcessedAt string `json:"processedAt"`
}

func (c *Core) surrender(body []byte) result {
	var req surrenderRequest
	if r, ok := decode(body, &req); !ok {
		return r
	}
	var v checker
	v.required("policyNo", req.PolicyNo)
	v.required("reason", req.Reason)
	v.required("refund.bankName", req.Refund.BankName)
	v.required("refund.accountName", req.Refund.AccountName)
	v.required("refund.accountNo", req.Refund.AccountNo)
	if !v.ok() {
		return *v.failure
	}
	p, refusal := c.livePolicy(req.PolicyNo)
	if refusal != nil {
		return *refusal
	}
	p.surrendered = true
	c.effects[OpSurrenders]++
	id := newEventID()
	c.emit(EventSurrenderSettled, id, SurrenderSettled{
		EventID: id, PolicyNo: p.no, Refunded: true, Message: "已退款至原账户",
	})
	return result{status: http.StatusOK, body: plainAnswer{
		answer:      answer{Accepted: true, Message: "退保成功"},
		ProcessedAt: c.now().Format(time.RFC3339),
	}}
}

// ---- POST /v1/endorsements

type endorsementRequest struct {
	PolicyNo     string `json:"policyNo"`
	SpecialTerms struct {
		Custom *bool  `json:"custom"`
		Text   string `json:"text"`
	} `json:"specialTerms"`
	Period struct {
		Start string `json:"start"`
		End   string `json:"end"`
		Days  *int   `json:"days"`
	} `json:"period"`
	Insured party `json:"insured"`
	Project struct {
		Name            string `json:"name"`
		Number          string `json:"number"`
		TendereeAddress string `json:"tendereeAddress"`
	} `json:"project"`
}

type endorsementAnswer struct {
	answer
	ProcessedAt     string `json:"processedAt"`
	InsurerPhone    string `json:"insurerPhone"`
	PolicyURL       string `json:"policyUrl"`
	InsurancePeriod string `json:"insurancePeriod"`
}

func (c *Core) endorse(body []byte) result {
	var req endorsementRequest
	if r, ok := decode(body, &req); !ok {
		return r
	}
	var v checker
	v.required("policyNo", req.PolicyNo)
	if req.SpecialTerms.Custom == nil {
		v.fail("缺少必填字段 specialTerms.custom")
	}
	v.required("specialTerms.text", req.SpecialTerms.Text)
	start := v.datetime("period.start", req.Period.Start)
	end := v.datetime("period.end", req.Period.End)
	switch {
	case req.Period.Days == nil:
		v.fail("缺少必填字段 period.days")
	case *req.Period.Days <= 0:
		v.fail("字段 period.days 必须大于 0")
	}
	if v.ok() && !end.After(start) {
		v.fail("字段 period.end 必须晚于 period.start")
	}
	v.required("insured.name", req.Insured.Name)
	v.required("insured.idNumber", req.Insured.IDNumber)
	v.required("project.name", req.Project.Name)
	v.required("project.number", req.Project.Number)
	if !v.ok() {
		return *v.failure
	}
	p, refusal := c.livePolicy(req.PolicyNo)
	if refusal != nil {
		return *refusal
	}
	p.start, p.end = start, end
	p.insured = req.Insured
	p.projectName = req.Project.Name
	if *req.SpecialTerms.Custom {
		p.endorseText = req.SpecialTerms.Text
	}
	p.endorsed++
	c.effects[OpEndorsements]++
	return result{status: http.StatusOK, body: endorsementAnswer{
		answer:          answer{Accepted: true, Message: "批改成功"},
		ProcessedAt:     c.now().Format(time.RFC3339),
		InsurerPhone:    c.cfg.InsurerPhone,
		PolicyURL:       c.policyURL(p.no),
		InsurancePeriod: p.period(),
	}}
}

// ---- POST /v1/claims

type claimRequest struct {
	PolicyNo string `json:"policyNo"`
	Claimant struct {
		Name  string `json:"name"`
		Phone string `json:"phone"`
	} `json:"claimant"`
	Reason string `json:"reason"`
}

type claimAnswer struct {
	answer
	ProcessedAt string `json:"processedAt"`
	ClaimNo     string `json:"claimNo"`
}

func (c *Core) claim(body []byte) result {
	var req claimRequest
	if r, ok := decode(body, &req); !ok {
		return r
	}
	var v checker
	v.required("policyNo", req.PolicyNo)
	v.required("claimant.name", req.Claimant.Name)
	v.required("claimant.phone", req.Claimant.Phone)
	v.required("reason", req.Reason)
	if !v.ok() {
		return *v.failure
	}
	if _, refusal := c.livePolicy(req.PolicyNo); refusal != nil {
		return *refusal
	}
	now := c.now()
	c.effects[OpClaims]++
	return result{status: http.StatusOK, body: claimAnswer{
		answer:      answer{Accepted: true, Message: "受理申请"},
		ProcessedAt: now.Format(time.RFC3339),
		ClaimNo:     c.number("LP", now),
	}}
}

// ---- POST /v1/invoices

// Invoice types of the core API (the platform's InvoiceType 1/2/3).
const (
	InvoiceElectronic = "electronic"
	InvoicePaper      = "paper"
	InvoiceSpecial    = "special"
)

type invoiceRequest struct {
	PolicyNo   string `json:"policyNo"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	TaxpayerID string `json:"taxpayerId"`
	Email      string `json:"email"`
	Delivery   struct {
		Recipient string `json:"recipient"`
		Phone     string `json:"phone"`
		Address   string `json:"address"`
	} `json:"delivery"`
	Special struct {
		RegisteredAddress string `json:"registeredAddress"`
		Bank              string `json:"bank"`
		BankAccount       string `json:"bankAccount"`
		Phone             string `json:"phone"`
	} `json:"special"`
}

type invoiceAnswer struct {
	answer
	ProcessedAt string `json:"processedAt"`
	InvoiceNo   string `json:"invoiceNo"`
}

func (c *Core) invoice(body []byte) result {
	var req invoiceRequest
	if r, ok := decode(body, &req); !ok {
		return r
	}
	var v checker
	v.required("policyNo", req.PolicyNo)
	v.oneOf("type", req.Type, InvoiceElectronic, InvoicePaper, InvoiceSpecial)
	v.required("title", req.Title)
	v.required("taxpayerId", req.TaxpayerID)
	if req.Type == InvoicePaper || req.Type == InvoiceSpecial {
		// A paper invoice has to be posted somewhere.
		v.required("delivery.recipient", req.Delivery.Recipient)
		v.required("delivery.address", req.Delivery.Address)
	}
	if req.Type == InvoiceSpecial {
		// A special VAT invoice must print the buyer's registration details.
		v.required("special.registeredAddress", req.Special.RegisteredAddress)
		v.required("special.bank", req.Special.Bank)
		v.required("special.bankAccount", req.Special.BankAccount)
		v.required("special.phone", req.Special.Phone)
	}
	if !v.ok() {
		return *v.failure
	}
	p, refusal := c.livePolicy(req.PolicyNo)
	if refusal != nil {
		return *refusal
	}
	now := c.now()
	invoiceNo := c.number("FP", now)
	c.invoices[invoiceNo] = p.no
	c.effects[OpInvoices]++
	id := newEventID()
	ev := InvoiceIssued{EventID: id, PolicyNo: p.no, InvoiceNo: invoiceNo}
	if req.Type == InvoiceElectronic {
		ev.DownloadURL = c.invoiceURL(invoiceNo)
	} else {
		// Simulated shipment: handed to the courier at once.
		ev.Express = &Express{Company: "顺丰速运", TrackingNo: fmt.Sprintf("SF%012d", c.nextSeq())}
	}
	c.emit(EventInvoiceIssued, id, ev)
	return result{status: http.StatusOK, body: invoiceAnswer{
		answer:      answer{Accepted: true, Message: "受理申请"},
		ProcessedAt: now.Format(time.RFC3339),
		InvoiceNo:   invoiceNo,
	}}
}
