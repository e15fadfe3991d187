package mapping_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

const (
	insureFile = `message: insureRequest
reply_root: insureResponse
core: {method: POST, path: /v1/proposals}
request:
  - {xml: applicantInfo/name, json: applicant.name, type: string, required: true}
reply:
  - {xml: resultFlag, json: accepted, type: boolean, required: true}
`
	paidFile = `event: policy-paid
callback: queryPolicyRequest
reply_root: queryPolicyResponse
order_key: policyNo
event_id: eventId
body:
  - {xml: policyNo, json: policyNo, type: string, required: true}
`
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDir(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"insure.yaml":        insureFile,
		"policy-paid.yml":    paidFile,
		"README.md":          "not a mapping",
		".#insure.yaml":      "editor lock file: skipped",
		"old/surrender.yaml": "in a sub-folder: skipped",
	})
	set, err := mapping.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Inbound) != 1 || len(set.Outbound) != 1 {
		t.Fatalf("%d inbound, %d outbound", len(set.Inbound), len(set.Outbound))
	}
	in := set.Inbound["insureRequest"]
	if in == nil || in.File != filepath.Join(dir, "insure.yaml") || in.ReplyRoot != "insureResponse" {
		t.Errorf("inbound %+v", in)
	}
	out := set.Outbound["policy-paid"]
	if out == nil || out.File != filepath.Join(dir, "policy-paid.yml") || out.Callback != "queryPolicyRequest" ||
		out.ReplyRoot != "queryPolicyResponse" || out.OrderKey != "policyNo" || out.EventID != "eventId" {
		t.Errorf("outbound %+v", out)
	}
	json, err := in.Request.XMLToJSON(body(t, "<applicantInfo><name>陈大文</name></applicantInfo>"), nil)
	if err != nil || string(json) != `{"applicant":{"name":"陈大文"}}` {
		t.Errorf("XMLToJSON = %s, %v", json, err)
	}
}

func TestLoadDirErrors(t *testing.T) {
	t.Run("all problems of all files, by file name and line", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{
			"a.yaml": strings.Replace(insureFile, "type: string", "type: decmial", 1),
			"b.yaml": strings.Replace(paidFile, "required: true", "required: true, colour: red", 1),
			"c.yaml": insureFile,
		})
		_, err := mapping.LoadDir(dir)
		// Files are named as configured: the folder and the name.
		want := dir + `/a.yaml:5: unknown type "decmial" (want string, decimal, integer, boolean, datetime or enum)
` + dir + `/b.yaml:7: unknown key "colour" in row`
		if err == nil || err.Error() != want {
			t.Fatalf("error\n got %v\nwant %s", err, want)
		}
		if !errors.Is(err, mapping.ErrInvalidMapping) {
			t.Error("not ErrInvalidMapping")
		}
		var le *mapping.LoadError
		if !errors.As(err, &le) || le.File != dir+"/a.yaml" || le.Line != 5 {
			t.Errorf("first LoadError %+v", le)
		}
	})
	t.Run("two files claim one message", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"a.yaml": insureFile, "b.yaml": "# copy\n" + insureFile})
		_, err := mapping.LoadDir(dir)
		if want := dir + `/b.yaml:2: message "insureRequest" is already mapped by ` + dir + `/a.yaml:1`; err == nil || err.Error() != want {
			t.Errorf("error\n got %v\nwant %s", err, want)
		}
	})
	t.Run("two files claim one event", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"a.yaml": paidFile, "b.yml": paidFile})
		_, err := mapping.LoadDir(dir)
		if want := dir + `/b.yml:1: event "policy-paid" is already mapped by ` + dir + `/a.yaml:1`; err == nil || err.Error() != want {
			t.Errorf("error\n got %v\nwant %s", err, want)
		}
	})
	t.Run("no mapping files", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"notes.txt": "x"})
		if _, err := mapping.LoadDir(dir); !errors.Is(err, mapping.ErrNoMappings) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		_, err := mapping.LoadDir(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v", err)
		}
	})
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{
		"mappings/insure.yaml":      {Data: []byte(insureFile)},
		"mappings/policy-paid.yaml": {Data: []byte(paidFile)},
		"other/x.yaml":              {Data: []byte("not read")},
	}
	set, err := mapping.LoadFS(fsys, "mappings")
	if err != nil {
		t.Fatal(err)
	}
	if set.Inbound["insureRequest"] == nil || set.Outbound["policy-paid"] == nil {
		t.Errorf("set %+v", set)
	}
	if _, err := mapping.LoadFS(fsys, "empty"); err == nil {
		t.Error("missing folder accepted")
	}
}
