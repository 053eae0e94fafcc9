// Package s3test runs an S3-compatible server on loopback for tests and benchmarks: gofakes3's
// in-memory S3 behind an authenticator that checks AWS Signature Version 4 as S3 does, for
// header-signed requests (with a hex payload hash, UNSIGNED-PAYLOAD, or the aws-chunked
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD body whose every chunk is signed) and for pre-signed URLs
// (query authentication with an expiry). A request without a valid signature from the one
// configured key pair is refused with S3's error XML (403 AccessDenied, InvalidAccessKeyId or
// SignatureDoesNotMatch), so a client that signs wrongly fails here as it would on AWS.
//
// Words used here:
//
//   - Key pair: the access key id and secret the server accepts (Server.AccessKey, Secret).
//   - Scope: date/region/s3/aws4_request, from the request's credential; the region must be
//     the server's (Server.Region).
package s3test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

const (
	algorithm       = "AWS4-HMAC-SHA256"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	streamingSigned = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	timeFormat      = "20060102T150405Z"
	emptySHA256     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	maxSkew         = 15 * time.Minute
	maxBody         = 256 << 20
)

// Server is an S3-compatible server on loopback.
type Server struct {
	// URL is the endpoint, http://127.0.0.1:<port> (https with NewTLS).
	URL string
	// AccessKey, Secret and Region are what requests must be signed with.
	AccessKey, Secret, Region string

	backend gofakes3.Backend
	ts      *httptest.Server

	mu       sync.Mutex
	accepted int
	refused  []string // S3 error codes, in order
}

// Options configure a Server; empty fields get test defaults.
type Options struct {
	AccessKey, Secret, Region string
	// Buckets are created empty at start.
	Buckets []string
	// HostBucketBase enables virtual-host addressing for hosts <bucket>.<base>.
	HostBucketBase []string
	// TLS serves https with httptest's certificate (Server.Client trusts it).
	TLS bool
}

// New starts a server; it stops when the test ends.
func New(t interface {
	Helper()
	Cleanup(func())
	Fatal(...any)
}, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a server; Close stops it.
func Start(o Options) (*Server, error) {
	if o.AccessKey == "" {
		o.AccessKey = "AKIDRUNPODCOMFYTEST"
	}
	if o.Secret == "" {
		o.Secret = "wJalrXUtnFEMI/K7MDENG/runpodcomfytestsecret"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	be := s3mem.New()
	for _, b := range o.Buckets {
		if err := be.CreateBucket(b); err != nil {
			return nil, fmt.Errorf("creating bucket %s: %w", b, err)
		}
	}
	opts := []gofakes3.Option{gofakes3.WithLogger(gofakes3.DiscardLog())}
	if len(o.HostBucketBase) > 0 {
		opts = append(opts, gofakes3.WithHostBucketBase(o.HostBucketBase...))
	}
	fake := gofakes3.New(be, opts...)
	s := &Server{AccessKey: o.AccessKey, Secret: o.Secret, Region: o.Region, backend: be}
	h := s.authenticate(fake.Server())
	if o.TLS {
		s.ts = httptest.NewTLSServer(h)
	} else {
		s.ts = httptest.NewServer(h)
	}
	s.URL = s.ts.URL
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.ts.Close() }

// Client is an HTTP client that trusts the server's certificate (with TLS).
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Object returns a stored object's content and content type, read from the backend.
func (s *Server) Object(bucket, key string) ([]byte, string, error) {
	obj, err := s.backend.GetObject(bucket, key, nil)
	if err != nil {
		return nil, "", err
	}
	defer obj.Contents.Close()
	b, err := io.ReadAll(obj.Contents)
	return b, obj.Metadata["Content-Type"], err
}

// Keys lists the keys in bucket.
func (s *Server) Keys(bucket string) ([]string, error) {
	res, err := s.backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, c := range res.Contents {
		keys = append(keys, c.Key)
	}
	sort.Strings(keys)
	return keys, nil
}

// RotateSecret makes the server accept only secret from now on, as when a key is rotated:
// clients still signing with the old one are refused.
func (s *Server) RotateSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Secret = secret
}

func (s *Server) secret() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Secret
}

// Stats returns how many requests passed authentication and the error codes of those refused.
func (s *Server) Stats() (accepted int, refused []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, append([]string(nil), s.refused...)
}

// authError is a refused request: an S3 error code and message with its HTTP status.
type authError struct {
	status  int
	code    string
	message string
}

func (e *authError) Error() string { return e.code + ": " + e.message }

func refuse(status int, code, format string, args ...any) *authError {
	return &authError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.verify(r); err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				ae = refuse(http.StatusBadRequest, "InvalidRequest", "%v", err)
			}
			s.mu.Lock()
			s.refused = append(s.refused, ae.code)
			s.mu.Unlock()
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(ae.status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource></Error>",
				ae.code, xmlEscape(ae.message), xmlEscape(r.URL.Path))
			return
		}
		s.mu.Lock()
		s.accepted++
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// credential is a parsed Credential=AK/date/region/s3/aws4_request.
type credential struct {
	accessKey, date, region string
}

func (c credential) scope() string { return c.date + "/" + c.region + "/s3/aws4_request" }

func (s *Server) parseCredential(v string) (credential, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
		return credential{}, refuse(http.StatusBadRequest, "AuthorizationHeaderMalformed", "bad credential %q", v)
	}
	c := credential{accessKey: parts[0], date: parts[1], region: parts[2]}
	if c.accessKey != s.AccessKey {
		return c, refuse(http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
	}
	if c.region != s.Region {
		return c, refuse(http.StatusBadRequest, "AuthorizationHeaderMalformed", "the region %q is wrong; expecting %q", c.region, s.Region)
	}
	return c, nil
}

// verify checks r's signature and, for a signed or streaming payload, its body (which it
// replaces with the decoded bytes).
func (s *Server) verify(r *http.Request) error {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != "" {
		return s.verifyPresigned(r)
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return refuse(http.StatusForbidden, "AccessDenied", "Access Denied")
	}
	rest, ok := strings.CutPrefix(auth, algorithm+" ")
	if !ok {
		return refuse(http.StatusBadRequest, "InvalidArgument", "unsupported authorization type")
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred, err := s.parseCredential(fields["Credential"])
	if err != nil {
		return err
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(timeFormat, amzDate)
	if err != nil || !strings.HasPrefix(amzDate, cred.date) {
		return refuse(http.StatusForbidden, "AccessDenied", "bad X-Amz-Date %q", amzDate)
	}
	if d := time.Since(t); d > maxSkew || d < -maxSkew {
		return refuse(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		return refuse(http.StatusBadRequest, "InvalidRequest", "missing X-Amz-Content-Sha256")
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !contains(signed, "host") || !contains(signed, "x-amz-date") || !contains(signed, "x-amz-content-sha256") {
		return refuse(http.StatusForbidden, "AccessDenied", "host, x-amz-date and x-amz-content-sha256 must be signed")
	}
	creq := canonicalRequest(r, signed, canonicalQuery(q, ""), payload)
	key := signingKey(s.secret(), cred)
	want := hex.EncodeToString(hmacSHA256(key, stringToSign(amzDate, cred, creq)))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return refuse(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	}
	switch {
	case payload == unsignedPayload:
		return nil
	case payload == streamingSigned:
		return decodeStreaming(r, key, amzDate, cred, fields["Signature"])
	case strings.HasPrefix(payload, "STREAMING-"):
		return refuse(http.StatusNotImplemented, "NotImplemented", "payload %s is not supported by this test server", payload)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return err
	}
	r.Body.Close()
	if len(body) > maxBody {
		return refuse(http.StatusBadRequest, "EntityTooLarge", "body over %d bytes", maxBody)
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != payload {
		return refuse(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

func (s *Server) verifyPresigned(r *http.Request) error {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != algorithm {
		return refuse(http.StatusBadRequest, "InvalidArgument", "unsupported X-Amz-Algorithm")
	}
	cred, err := s.parseCredential(q.Get("X-Amz-Credential"))
	if err != nil {
		return err
	}
	amzDate := q.Get("X-Amz-Date")
	t, err := time.Parse(timeFormat, amzDate)
	if err != nil || !strings.HasPrefix(amzDate, cred.date) {
		return refuse(http.StatusForbidden, "AccessDenied", "bad X-Amz-Date")
	}
	exp, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || exp <= 0 || exp > 7*24*3600 {
		return refuse(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and 604800 seconds")
	}
	if time.Now().After(t.Add(time.Duration(exp) * time.Second)) {
		return refuse(http.StatusForbidden, "AccessDenied", "Request has expired")
	}
	if t.After(time.Now().Add(maxSkew)) {
		return refuse(http.StatusForbidden, "AccessDenied", "Request is not valid yet")
	}
	signed := strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
	if !contains(signed, "host") {
		return refuse(http.StatusForbidden, "AccessDenied", "host must be signed")
	}
	creq := canonicalRequest(r, signed, canonicalQuery(q, "X-Amz-Signature"), unsignedPayload)
	want := hex.EncodeToString(hmacSHA256(signingKey(s.secret(), cred), stringToSign(amzDate, cred, creq)))
	if !hmac.Equal([]byte(want), []byte(q.Get("X-Amz-Signature"))) {
		return refuse(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	}
	// gofakes3 does not expect the authentication parameters.
	for k := range q {
		if strings.HasPrefix(k, "X-Amz-") {
			q.Del(k)
		}
	}
	r.URL.RawQuery = q.Encode()
	return nil
}

// decodeStreaming reads an aws-chunked body, checking each chunk's signature against the
// chain that starts at the seed (the header signature), and replaces the body with the data.
func decodeStreaming(r *http.Request, key []byte, amzDate string, cred credential, seed string) error {
	decoded, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
	if err != nil || decoded < 0 || decoded > maxBody {
		return refuse(http.StatusBadRequest, "MissingContentLength", "bad X-Amz-Decoded-Content-Length")
	}
	br := bufio.NewReader(io.LimitReader(r.Body, maxBody+64<<10))
	prev := seed
	var data bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return refuse(http.StatusBadRequest, "IncompleteBody", "chunk header: %v", err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		sizeHex, sig, ok := strings.Cut(line, ";chunk-signature=")
		size, perr := strconv.ParseInt(sizeHex, 16, 64)
		if !ok || perr != nil || size < 0 || int64(data.Len())+size > decoded {
			return refuse(http.StatusBadRequest, "IncompleteBody", "bad chunk header %q", line)
		}
		chunk := make([]byte, size)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return refuse(http.StatusBadRequest, "IncompleteBody", "chunk: %v", err)
		}
		if crlf := make([]byte, 2); func() bool { _, err := io.ReadFull(br, crlf); return err != nil || string(crlf) != "\r\n" }() {
			return refuse(http.StatusBadRequest, "IncompleteBody", "chunk not ended by CRLF")
		}
		sum := sha256.Sum256(chunk)
		sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n" + cred.scope() + "\n" + prev + "\n" + emptySHA256 + "\n" + hex.EncodeToString(sum[:])
		want := hex.EncodeToString(hmacSHA256(key, sts))
		if !hmac.Equal([]byte(want), []byte(sig)) {
			return refuse(http.StatusForbidden, "SignatureDoesNotMatch", "chunk signature does not match")
		}
		prev = sig
		data.Write(chunk)
		if size == 0 {
			break
		}
	}
	r.Body.Close()
	if int64(data.Len()) != decoded {
		return refuse(http.StatusBadRequest, "IncompleteBody", "got %d bytes, X-Amz-Decoded-Content-Length says %d", data.Len(), decoded)
	}
	sum := sha256.Sum256(data.Bytes())
	r.Body = io.NopCloser(bytes.NewReader(data.Bytes()))
	r.ContentLength = int64(data.Len())
	r.Header.Set("Content-Length", strconv.Itoa(data.Len()))
	r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	r.Header.Del("X-Amz-Decoded-Content-Length")
	if ce := strings.TrimPrefix(strings.TrimPrefix(r.Header.Get("Content-Encoding"), "aws-chunked"), ","); ce != "" {
		r.Header.Set("Content-Encoding", ce)
	} else {
		r.Header.Del("Content-Encoding")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// canonicalRequest is SigV4's canonical request for r.
func canonicalRequest(r *http.Request, signed []string, query, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(uriEncode(r.URL.Path, false) + "\n")
	b.WriteString(query + "\n")
	for _, h := range signed {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			vals := r.Header.Values(h)
			for i := range vals {
				vals[i] = strings.Join(strings.Fields(vals[i]), " ")
			}
			v = strings.Join(vals, ",")
		}
		b.WriteString(h + ":" + v + "\n")
	}
	b.WriteString("\n" + strings.Join(signed, ";") + "\n" + payload)
	return b.String()
}

// canonicalQuery encodes q sorted by key, then value, without the key skip.
func canonicalQuery(q map[string][]string, skip string) string {
	var pairs []string
	for k, vs := range q {
		if k == skip {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// uriEncode is SigV4's URI encoding: unreserved characters as they are, every other byte
// %XX; slashes too when encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func stringToSign(amzDate string, cred credential, creq string) string {
	h := sha256.Sum256([]byte(creq))
	return algorithm + "\n" + amzDate + "\n" + cred.scope() + "\n" + hex.EncodeToString(h[:])
}

func signingKey(secret string, cred credential) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), cred.date)
	k = hmacSHA256(k, cred.region)
	k = hmacSHA256(k, "s3")
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// Get fetches u with a plain GET, as a client of the worker's output does, and returns the
// body, or an error with the status and S3 error code.
func Get(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
