package protocol

import (
	"os"
	"sync"
	"testing"
	"unsafe"
)

// TestReleaseReusesNodes: after Release, the next Parse may build its tree
// in the same nodes; that tree is right, the released envelope is empty,
// and strings read from the released tree are untouched.
func TestReleaseReusesNodes(t *testing.T) {
	a, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(envelope(`<applicantInfo><name>李四</name><mobile>139</mobile></applicantInfo><x a="&amp;">&lt;</x>`))
	for range 20 {
		envA, err := Parse(a, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		name := envA.Find("applicantInfo", "name").FirstChild.Data
		value := envA.SignedValue()
		envA.Release()
		if envA.Body != nil || envA.Head != nil || envA.Sign != "" || len(envA.SignedValue()) != 0 {
			t.Fatalf("released envelope still has content: %+v", envA)
		}
		envA.Release() // a second Release is harmless
		envB, err := Parse(b, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := parseStd(b, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if d := treeDiff(envB.Body, want.Body); d != "" {
			t.Fatalf("tree built in reused nodes differs: %s", d)
		}
		if name != "陈大文" || string(value) != string(mustParse(t, a).SignedValue()) {
			t.Fatalf("strings of the released tree changed: %q", name)
		}
		envB.Release()
	}
}

// TestReleaseConcurrent parses, verifies and releases from several
// goroutines at once (run with -race).
func TestReleaseConcurrent(t *testing.T) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				env, err := Parse(data, Limits{})
				if err != nil {
					t.Error(err)
					return
				}
				if _, ok := env.Verify([]string{testKey}); !ok {
					t.Error("does not verify")
				}
				env.Release()
			}
		})
	}
	wg.Wait()
}

func mustParse(t *testing.T, data []byte) *Envelope {
	t.Helper()
	env, err := Parse(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestKeptStringsDoNotPinTheMessage: Root and RequestUUID, which callers
// keep (metric labels, journal), are not substrings of the message copy
// the tree's strings share.
func TestKeptStringsDoNotPinTheMessage(t *testing.T) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		t.Fatal(err)
	}
	env := mustParse(t, data)
	name := env.Find("applicantInfo", "name").FirstChild.Data
	shared := unsafe.StringData(env.Body.Data)
	for _, s := range []string{env.Root, env.RequestUUID} {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		base := uintptr(unsafe.Pointer(shared))
		if p >= base-uintptr(len(data)) && p < base+uintptr(len(data)) {
			t.Errorf("%q points into the message copy", s)
		}
	}
	if name != "陈大文" || env.Root != "insureRequest" || env.RequestUUID != "b98ec45e-8d21-42dd-8187-9637ba6e391e" {
		t.Errorf("values %q %q %q", name, env.Root, env.RequestUUID)
	}
}
