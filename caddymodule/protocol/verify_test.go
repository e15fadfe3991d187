package protocol

import (
	"bytes"
	"encoding"
	"hash"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// TestVerifyAnySeveralKeys holds the several-keys path (V's whole MD5
// blocks hashed once, then tail+key per key) to the one-key path, for V
// lengths on both sides of each block boundary and keys of every length
// class.
func TestVerifyAnySeveralKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"old-key-being-rotated-out", "", testKey, strings.Repeat("k", 70)}
	for _, n := range []int{0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4095, 4096, 5000} {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(rng.IntN(256))
		}
		for want, key := range keys {
			if key == "" {
				continue
			}
			sign := Sign(v, key)
			for _, s := range []string{sign, strings.ToLower(sign)} {
				if i, ok := VerifyAny(v, s, keys); !ok || i != want {
					t.Errorf("len %d key %d: VerifyAny = %d, %v", n, want, i, ok)
				}
			}
			if i, ok := VerifyAny(v, sign, keys[:1]); (want == 0) != ok || (ok && i != 0) {
				t.Errorf("len %d key %d alone: VerifyAny = %d, %v", n, want, i, ok)
			}
			bad := []byte(sign)
			bad[31] ^= 1
			if i, ok := VerifyAny(v, string(bad), keys); ok || i != -1 {
				t.Errorf("len %d: altered sign verifies (%d)", n, i)
			}
		}
		if _, ok := VerifyAny(v, Sign(v, ""), keys); ok {
			t.Errorf("len %d: empty key verifies", n)
		}
	}
}

// TestVerifyAnyLeavesNoKeyInPools: the pooled digests and buffers of the
// several-keys path hold no key bytes afterwards.
func TestVerifyAnyLeavesNoKeyInPools(t *testing.T) {
	const secret = "SECRET-KEY-0123456789"
	v := bytes.Repeat([]byte("v"), 100) // tail of 36 bytes: the key straddles a block
	VerifyAny(v, Sign(v, secret), []string{"other", secret})
	for range 4 {
		h := md5Pool.Get().(hash.Hash)
		state, err := h.(encoding.BinaryAppender).AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(state, []byte(secret[len(secret)-8:])) {
			t.Error("a pooled digest still holds the key")
		}
		defer md5Pool.Put(h)
		b := getBuf()
		if bytes.Contains((*b)[:cap(*b)], []byte(secret[len(secret)-8:])) {
			t.Error("a pooled buffer still holds the key")
		}
		defer putBuf(b)
	}
}

// TestEnvelopeVerify: Verify is VerifyAny over SignedValue, and leaves no
// trace in the pooled buffers it uses.
func TestEnvelopeVerify(t *testing.T) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		t.Fatal(err)
	}
	env, err := Parse(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, keys := range [][]string{{testKey}, {"other", testKey}, {"other"}, nil, {""}} {
		wi, wok := VerifyAny(env.SignedValue(), env.Sign, keys)
		gi, gok := env.Verify(keys)
		if wi != gi || wok != gok {
			t.Errorf("keys %q: Verify = %d, %v; VerifyAny = %d, %v", keys, gi, gok, wi, wok)
		}
	}
	for range 10 {
		b := getBuf()
		if bytes.Contains((*b)[:cap(*b)], []byte(testKey)) {
			t.Error("a pooled buffer still holds the key")
		}
		defer putBuf(b)
	}
}
