package pii

import "testing"

func TestMaskByKind(t *testing.T) {
	for _, c := range []struct {
		kind    Kind
		in, out string
	}{
		{Name, "陈小明", "陈**"},
		{Name, "王红", "王*"},
		{Name, "王", "*"},
		{Name, "浙江宏达建设工程有限公司", "浙***********"},
		{Mobile, "13858012345", "138****2345"},
		{Mobile, "12345", "*****"},
		{Mobile, "123", "***"},
		{ID, "330106199001011234", "330***********1234"},
		{ID, "91330106MA2GL8XK3X", "913***********XK3X"},
		{ID, "1234567890", "**********"},
		{Bank, "1202020209000012345", "***************2345"},
		{Bank, "1234567", "*******"},
		{Email, "finance@hongda.example.com", "f***@hongda.example.com"},
		{Email, "finance", "*******"},
		{Email, "@example.com", "************"},
		{Address, "浙江省杭州市滨江区江南大道 588 号", "浙江省杭州市***"},
		{Address, "滨江区", "滨**"},
		{Other, "secret", "******"},
		{"", "not personal", "not personal"},
		{Name, "", ""},
	} {
		if got := c.kind.Mask(c.in); got != c.out {
			t.Errorf("%s.Mask(%q) = %q, want %q", c.kind, c.in, got, c.out)
		}
	}
}

func TestKindValid(t *testing.T) {
	for _, k := range []Kind{Name, Mobile, ID, Bank, Email, Address} {
		if !k.Valid() {
			t.Errorf("%s is not valid", k)
		}
	}
	for _, k := range []Kind{"", Other, "phone"} {
		if k.Valid() {
			t.Errorf("%q is valid in a mapping", k)
		}
	}
}

func TestMaskText(t *testing.T) {
	for in, want := range map[string]string{
		"投保人 13858012345 已存在":                          "投保人 138****2345 已存在",
		"统一社会信用代码 91330106MA2GL8XK3X 无效":               "统一社会信用代码 913***********XK3X 无效",
		"身份证 330106199001011234":                       "身份证 330***********1234",
		"账号1202020209000012345错误":                      "账号***************2345错误",
		"邮箱 finance@hongda-build.example.com 退信":       "邮箱 f***@hongda-build.example.com 退信",
		"投保单 TB20260101000001":                         "投保单 TB20260101000001",
		"0571-86001234 requestUUID 5f0c2a9e-3b7d-4c1e": "0571-86001234 requestUUID 5f0c2a9e-3b7d-4c1e",
		"payTime=2026-01-01 10:00:00":                  "payTime=2026-01-01 10:00:00",
	} {
		if got := MaskText(in, nil); got != want {
			t.Errorf("MaskText(%q) = %q, want %q", in, got, want)
		}
	}
	keep := map[string]bool{"2026112700000123": true, "13000000001": true}
	in := "保单 2026112700000123 / 13000000001 已退保, 账户 6222020200000000123"
	want := "保单 2026112700000123 / 13000000001 已退保, 账户 ***************0123"
	if got := MaskText(in, keep); got != want {
		t.Errorf("with the caller's numbers kept: %q, want %q", got, want)
	}
}

func TestBodyMasker(t *testing.T) {
	xmlNames := map[string]Kind{}
	Merge(xmlNames, "name", Name)
	Merge(xmlNames, "mobile", Mobile)
	Merge(xmlNames, "code", ID)
	Merge(xmlNames, "code", Bank) // conflicting kinds: everything hidden
	m := NewBodyMasker(xmlNames, map[string]Kind{"mobile": Mobile, "name": Name})

	in := `<a><name>陈&amp;明</name><mobile><![CDATA[13858012345]]></mobile><code>ABC123</code><other>13858012345</other></a>`
	want := `<a><name>陈**</name><mobile>138****2345</mobile><code>******</code><other>13858012345</other></a>`
	if got := string(m.XML([]byte(in))); got != want {
		t.Errorf("XML:\n got %s\nwant %s", got, want)
	}
	inJSON := `{"name": "陈\u5c0f明", "mobile":"13858012345", "x": "13858012345"}`
	wantJSON := `{"name": "陈**", "mobile":"138****2345", "x": "13858012345"}`
	if got := string(m.JSON([]byte(inJSON))); got != wantJSON {
		t.Errorf("JSON:\n got %s\nwant %s", got, wantJSON)
	}
	var zero BodyMasker
	if got := string(zero.XML([]byte(in))); got != in {
		t.Errorf("the zero masker changed %s", got)
	}
}
