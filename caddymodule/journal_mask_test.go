package caddymodule

import (
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// TestJournalMasksByKind: mask_personal_data masks the elements and keys
// of rows tagged pii by their kind (internal/pii), and nothing else.
func TestJournalMasksByKind(t *testing.T) {
	set, err := mapping.LoadDir("../mappings")
	if err != nil {
		t.Fatal(err)
	}
	m := newMasker(set.Inbound["insureRequest"])
	xml := `<applicantInfo><name>浙江宏达建设工程有限公司</name><mobile>13858012345</mobile>` +
		`<idNumber><![CDATA[91330106MA2GL8XK3X]]></idNumber><ProjectName>滨江大道</ProjectName></applicantInfo>`
	want := `<applicantInfo><name>浙***********</name><mobile>138****2345</mobile>` +
		`<idNumber>913***********XK3X</idNumber><ProjectName>滨江大道</ProjectName></applicantInfo>`
	if got := string(m.XML([]byte(xml))); got != want {
		t.Errorf("request XML:\n got %s\nwant %s", got, want)
	}
	json := `{"applicant":{"name":"浙江宏达建设工程有限公司","mobile":"13858012345"},"project":{"name2":"x"}}`
	wantJSON := `{"applicant":{"name":"浙***********","mobile":"138****2345"},"project":{"name2":"x"}}`
	if got := string(m.JSON([]byte(json))); got != wantJSON {
		t.Errorf("core request JSON:\n got %s\nwant %s", got, wantJSON)
	}
}
