package redact

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

const secret = "tok-3xAmple/Secret+42"

func TestString(t *testing.T) {
	r := New(secret, "other-value")
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "token=" + secret + "\n", "token=[REDACTED]\n"},
		{"twice", secret + secret, "[REDACTED][REDACTED]"},
		{"second value", "x other-value y", "x [REDACTED] y"},
		{"query escaped", "u?t=" + url.QueryEscape(secret), "u?t=[REDACTED]"},
		{"path escaped", "/p/" + url.PathEscape(secret), "/p/[REDACTED]"},
		{"base64", base64.StdEncoding.EncodeToString([]byte(secret)), "[REDACTED]"},
		{"base64 of echo", base64.StdEncoding.EncodeToString([]byte(secret + "\n")), "[REDACTED]"},
		{"base64 url", base64.URLEncoding.EncodeToString([]byte(secret)), "[REDACTED]"},
		{"base64 inside basic auth", base64.StdEncoding.EncodeToString([]byte("user:" + secret)), "[REDACTED]"},
		{"nothing", "hello world", "hello world"},
		{"prefix only", secret[:5], secret[:5]},
	} {
		got := r.String(tc.in)
		if tc.want == "[REDACTED]" {
			// Encoded forms leave at most the edges of the encoding: the
			// value's body must be gone.
			if !strings.Contains(got, Mark) {
				t.Errorf("%s: %q -> %q: no mark", tc.name, tc.in, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s: %q -> %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
	if New().String(secret) != secret || (*Redactor)(nil).String(secret) != secret {
		t.Error("an empty redactor changed its input")
	}
}

func TestStreamSplit(t *testing.T) {
	r := New(secret)
	text := "before " + secret + " middle " + base64.StdEncoding.EncodeToString([]byte(secret)) + " after " + secret[:4]
	// Every way of cutting the text into two chunks, and into single bytes.
	for cut := 0; cut <= len(text); cut++ {
		var out bytes.Buffer
		s := NewStream(r, &out)
		s.Write([]byte(text[:cut]))
		s.Write([]byte(text[cut:]))
		s.Flush()
		if strings.Contains(out.String(), secret) || strings.Contains(out.String(), secret[4:12]) {
			t.Fatalf("cut %d: secret leaked: %q", cut, out.String())
		}
		if !strings.HasPrefix(out.String(), "before [REDACTED] middle ") || !strings.HasSuffix(out.String(), " after "+secret[:4]) {
			t.Fatalf("cut %d: %q", cut, out.String())
		}
	}
	var out bytes.Buffer
	s := NewStream(r, &out)
	for i := 0; i < len(text); i++ {
		s.Write([]byte{text[i]})
	}
	if !s.Pending() {
		t.Error("the trailing prefix of the secret is not held back")
	}
	s.Flush()
	if strings.Contains(out.String(), secret) {
		t.Fatalf("byte by byte: secret leaked: %q", out.String())
	}
}

// A flush after a quiet moment releases the start of a value; when the
// rest follows, it is still hidden.
func TestStreamFlushedStart(t *testing.T) {
	r := New(secret)
	for cut := 1; cut < len(secret); cut++ {
		var out bytes.Buffer
		s := NewStream(r, &out)
		s.Write([]byte("x " + secret[:cut]))
		s.Flush()
		s.Flush()
		s.Write([]byte(secret[cut:] + " y"))
		s.Flush()
		if want := "x " + secret[:cut] + Mark + " y"; out.String() != want {
			t.Fatalf("cut %d: %q, want %q", cut, out.String(), want)
		}
	}
	// Released bytes that turn out not to be a secret are not written twice.
	var out bytes.Buffer
	s := NewStream(r, &out)
	s.Write([]byte("a " + secret[:3]))
	s.Flush()
	s.Write([]byte("zz"))
	s.Flush()
	if out.String() != "a "+secret[:3]+"zz" {
		t.Fatalf("%q", out.String())
	}
}

func TestStreamPassThrough(t *testing.T) {
	var out bytes.Buffer
	s := NewStream(nil, &out)
	s.Write([]byte("abc"))
	if out.String() != "abc" || s.Pending() {
		t.Fatalf("got %q", out.String())
	}
}

func FuzzStream(f *testing.F) {
	f.Add([]byte("x"+secret+"y"), 3)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		r := New(secret)
		var out bytes.Buffer
		s := NewStream(r, &out)
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		s.Write(data[:cut])
		s.Write(data[cut:])
		s.Flush()
		if want := r.Bytes(data); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("stream %q != whole %q", out.Bytes(), want)
		}
	})
}

// FuzzStreamFlush: whatever the chunks and flushes, the value never comes
// out whole.
func FuzzStreamFlush(f *testing.F) {
	f.Add([]byte("x"+secret+"y"+secret), 3, 9)
	f.Fuzz(func(t *testing.T, data []byte, a, b int) {
		if a < 0 || b < 0 || a > len(data) || b > len(data) || a > b {
			a, b = len(data)/3, 2*len(data)/3
		}
		var out bytes.Buffer
		s := NewStream(New(secret), &out)
		s.Write(data[:a])
		s.Flush()
		s.Write(data[a:b])
		s.Flush()
		s.Write(data[b:])
		s.Flush()
		if bytes.Contains(out.Bytes(), []byte(secret)) {
			t.Fatalf("secret in %q", out.Bytes())
		}
	})
}
