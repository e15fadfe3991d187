package mapping

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDatetimeRoundTrip(t *testing.T) {
	cases := []struct{ pattern, in string }{
		{"yyyy-MM-dd HH:mm:ss", "2019-04-01 00:00:00"},
		{"yyyyMMdd", "20190329"},
		{"yyyy-MM-dd HH:mm:ss:SSS", "2018-05-25 10:25:04:732"},
		{"yyyy-MM-dd'T'HH:mm:ss.SSS", "2018-05-25T10:25:04.007"},
		{"yyyy年MM月dd日", "2019年04月01日"},
		{"dd/MM/yyyy ''HH''", "01/04/2019 '23'"},
		{"RFC3339", "2019-04-01T00:00:00+08:00"},
		{"RFC3339", "2019-04-01T00:00:00.5Z"},
	}
	for _, tc := range cases {
		l, err := compileDatetime(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		tm, ok := l.parse(tc.in, defaultZone)
		if !ok {
			t.Errorf("%s: cannot parse %q", tc.pattern, tc.in)
			continue
		}
		if got := string(l.appendTo(nil, tm, defaultZone)); got != tc.in {
			t.Errorf("%s: %q → %q", tc.pattern, tc.in, got)
		}
	}
}

func TestDatetimeStrict(t *testing.T) {
	l, err := compileDatetime("yyyy-MM-dd HH:mm:ss")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"2019-4-01 00:00:00", "2019-04-01 00:00", "2019-04-01 00:00:00 ", " 2019-04-01 00:00:00",
		"2019-04-01T00:00:00", "2019-13-01 00:00:00", "2019-00-01 00:00:00", "2019-02-29 00:00:00",
		"2019-04-31 00:00:00", "2019-04-01 00:60:00", "2019-04-01 00:00:60", "２019-04-01 00:00:00",
	} {
		if _, ok := l.parse(in, defaultZone); ok {
			t.Errorf("accepted %q", in)
		}
	}
	if _, ok := l.parse("2020-02-29 23:59:59", defaultZone); !ok {
		t.Error("leap day refused")
	}
}

func TestDatetimeZones(t *testing.T) {
	l, _ := compileDatetime("yyyy-MM-dd HH:mm:ss")
	tm, _ := l.parse("2019-04-01 08:00:00", defaultZone)
	if !tm.Equal(time.Date(2019, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("default zone is not +08:00: %v", tm)
	}
	for name, offset := range map[string]int{"Asia/Shanghai": 8 * 3600, "UTC": 0, "+05:30": 5*3600 + 1800, "-03:00": -3 * 3600} {
		z, err := loadZone(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, off := time.Date(2019, 1, 1, 0, 0, 0, 0, z).Zone(); off != offset {
			t.Errorf("%s: offset %d", name, off)
		}
	}
	if _, err := loadZone("+8"); err == nil {
		t.Error("+8 accepted")
	}
}

// TestAppendJSONString: the output decodes to the input (invalid UTF-8 as
// U+FFFD, like encoding/json), and <, > and & are left readable.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted" \back\`, "ctl\x00\x01\x1f\n\r\t\b\f", "中文 ＆ emoji 🎉",
		"line\u2028sep\u2029", "bad\xffutf8\xc3", "<a href='x'>&amp;</a>",
	} {
		got := appendJSONString(nil, s)
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Errorf("%q: invalid JSON %s", s, got)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); dec != want {
			t.Errorf("%q: decodes to %q", s, dec)
		}
		if strings.ContainsAny(string(got), "\u2028\u2029") {
			t.Errorf("%q: raw line separators in %s", s, got)
		}
	}
	if got := string(appendJSONString(nil, "a<b>&c")); got != `"a<b>&c"` {
		t.Errorf("HTML characters escaped: %s", got)
	}
}

func TestIsXMLName(t *testing.T) {
	for _, ok := range []string{"a", "ProjectName", "_x", "a-b.c1", "中文"} {
		if !isXMLName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "1a", "-a", ".a", "a b", "a:b", "a/b", "a<", "，", "a😀"} {
		if isXMLName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAppendPadded(t *testing.T) {
	for _, tc := range []struct {
		n, w int
		want string
	}{{0, 2, "00"}, {7, 2, "07"}, {59, 2, "59"}, {5, 3, "005"}, {2019, 4, "2019"}, {12345, 4, "12345"}} {
		if got := string(appendPadded(nil, tc.n, tc.w)); got != tc.want {
			t.Errorf("appendPadded(%d, %d) = %q", tc.n, tc.w, got)
		}
	}
}
