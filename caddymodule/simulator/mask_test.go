package simulator

import "testing"

func TestMaskValues(t *testing.T) {
	for _, c := range []struct {
		name, got, want string
	}{
		{"company", maskName("浙江宏达建设工程有限公司"), "浙江****公司"},
		{"person 3", maskName("王晓红"), "王*红"},
		{"person 2", maskName("王红"), "王*"},
		{"one", maskName("王"), "*"},
		{"empty name", maskName(""), ""},
		{"mobile", maskMobile("13858012345"), "138****2345"},
		{"short mobile", maskMobile("12345"), "****"},
		{"credit code", maskID("91330106MA2GL8XK3X"), "9133****XK3X"},
		{"id card", maskID("330106199001011234"), "3301****1234"},
		{"account", maskAccount("1202020209000012345"), "****2345"},
		{"email", maskEmail("finance@hongda-build.example.com"), "f***@hongda-build.example.com"},
		{"not an email", maskEmail("finance"), "****"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestMaskText(t *testing.T) {
	for in, want := range map[string]string{
		"投保人 13858012345 已存在":                          "投保人 138****2345 已存在",
		"统一社会信用代码 91330106MA2GL8XK3X 无效":               "统一社会信用代码 9133****XK3X 无效",
		"身份证 330106199001011234":                       "身份证 3301****1234",
		"账号1202020209000012345错误":                      "账号****2345错误",
		"邮箱 finance@hongda-build.example.com 退信":       "邮箱 f***@hongda-build.example.com 退信",
		"保单 BD20190401000002 不存在或未生效":                  "保单 BD20190401000002 不存在或未生效",
		"投保单 TB20260101000001":                         "投保单 TB20260101000001",
		"0571-86001234 requestUUID 5f0c2a9e-3b7d-4c1e": "0571-86001234 requestUUID 5f0c2a9e-3b7d-4c1e",
		"payTime=2026-01-01 10:00:00":                  "payTime=2026-01-01 10:00:00",
	} {
		if got := maskTextExcept(in, nil); got != want {
			t.Errorf("maskTextExcept(%q) = %q, want %q", in, got, want)
		}
	}
	keep := map[string]bool{"2026112700000123": true, "13000000001": true}
	in := "保单 2026112700000123 / 13000000001 已退保, 账户 6222020200000000123"
	want := "保单 2026112700000123 / 13000000001 已退保, 账户 ****0123"
	if got := maskTextExcept(in, keep); got != want {
		t.Errorf("with the run's numbers kept: %q, want %q", got, want)
	}
}
