package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFetch: a body within the limit is returned; one over it is ErrTooLarge; a bad status is
// named by its code with the URL's query cut and without the body; a failed connection names
// the URL without its query.
func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(rw, "secret-body", http.StatusNotFound)
			return
		}
		rw.Write([]byte("0123456789"))
	}))
	defer srv.Close()
	ctx := context.Background()
	hc := NewClient(true)
	if b, err := Fetch(ctx, hc, srv.URL+"/ok", 10); err != nil || string(b) != "0123456789" {
		t.Errorf("within the limit: %q %v", b, err)
	}
	if _, err := Fetch(ctx, hc, srv.URL+"/ok", 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	_, err := Fetch(ctx, hc, srv.URL+"/missing?sig=s3cr3t", 10)
	if err == nil || !strings.Contains(err.Error(), "/missing?...: HTTP 404 Not Found") || strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "secret-body") {
		t.Errorf("404: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Fetch(ctx, hc, "http://"+addr+"/a?X-Amz-Signature=s3cr3t", 10)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), addr+"/a?...") {
		t.Errorf("closed port: %v", err)
	}
	if _, err := Fetch(ctx, NewClient(false), srv.URL+"/ok", 10); !errors.Is(err, ErrRefused) {
		t.Errorf("the guarded client fetched from loopback: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://b.s3.amazonaws.com/o.png?X-Amz-Signature=abc": "https://b.s3.amazonaws.com/o.png?...",
		"https://host/path":           "https://host/path",
		"http://x/job-done/w/j?gpu=A": "http://x/job-done/w/j?...",
		"https://user:tok@host/x.png": "https://***@host/x.png",
		"https://tok@host/a@b?s=1":    "https://***@host/a@b?...",
		"https://host/x#frag":         "https://host/x",
		"ht tp://u:p@h/%zz?sig=1":     "ht tp://***@h/%zz?...",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
