// Package registrytest serves a Comfy Registry on loopback for tests: the real API's paths,
// fields and quirks (docs.comfy.org, Registry API reference), with archives on a second
// server standing for the registry's download bucket.
//
//   - GET /nodes/{id}/versions?statuses=S&statuses=T: a JSON array of NodeVersion objects
//     (unpaginated), only those of the statuses given (all without the parameter); 404 for an
//     unknown node, 403 for a banned one.
//   - GET /nodes/{id}/versions/{version}: one NodeVersion, 404 when unknown.
//   - GET /nodes/{id}/install[?version=V]: the NodeVersion to install, the newest active one
//     without a version; 404 when unknown.
//   - A NodeVersion carries every field the real one has (changelog, comfy_node_extract_status,
//     createdAt, dependencies, deprecated, downloadUrl, id, node_id, status, status_reason,
//     supported_*, tags, tags_admin, version); statuses are spelt NodeVersionStatusActive,
//     ...Pending, ...Flagged, ...Deleted, ...Banned. Errors are {"message": "..."}.
//   - Archives are zips of the version's files, written deterministically, served at
//     <Files>/<id>/<version>/node.zip.
//
// Every request to either server is recorded with its headers, so tests can check that no
// credential reaches them.
package registrytest

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Statuses as the registry spells them.
const (
	Active  = "NodeVersionStatusActive"
	Pending = "NodeVersionStatusPending"
	Flagged = "NodeVersionStatusFlagged"
	Deleted = "NodeVersionStatusDeleted"
	Banned  = "NodeVersionStatusBanned"
)

// Version is one published version of a node.
type Version struct {
	Version      string `json:"version"`
	Status       string `json:"status,omitempty"` // "" = Active
	StatusReason string `json:"status_reason,omitempty"`
	Deprecated   bool   `json:"deprecated,omitempty"`
	// Files are the archive's files (name -> content); Zip, when set, is served instead.
	Files map[string]string `json:"files,omitempty"`
	Zip   []byte            `json:"-"`
	// NoURLInList leaves downloadUrl out of the list endpoint's entry (the version endpoints
	// still give it).
	NoURLInList bool `json:"no_url_in_list,omitempty"`
}

// Node is one node of the registry.
type Node struct {
	Banned   bool      `json:"banned,omitempty"`
	Versions []Version `json:"versions"`
}

// Request is one recorded request.
type Request struct {
	Host   string // "api" or "files"
	Method string
	URL    string
	Header http.Header
}

// Server is a registry on loopback.
type Server struct {
	// URL is the API's base URL; Files the download host's.
	URL, Files string

	api, files *httptest.Server
	mu         sync.Mutex
	source     func() (map[string]Node, error)
	requests   []Request
}

// Start serves the nodes source returns, read again on every request (so a test may publish
// a version between two commands).
func Start(source func() (map[string]Node, error)) *Server {
	s := &Server{source: source}
	s.files = httptest.NewServer(http.HandlerFunc(s.serveFile))
	s.api = httptest.NewServer(http.HandlerFunc(s.serveAPI))
	s.URL, s.Files = s.api.URL, s.files.URL
	return s
}

// Static returns a source of fixed nodes.
func Static(nodes map[string]Node) func() (map[string]Node, error) {
	return func() (map[string]Node, error) { return nodes, nil }
}

// Close stops both servers.
func (s *Server) Close() {
	s.api.Close()
	s.files.Close()
}

// Requests returns the requests served so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) record(host string, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Host: host, Method: r.Method, URL: r.URL.String(), Header: r.Header.Clone()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}

// nodeVersion is the registry's NodeVersion object.
type nodeVersion struct {
	Changelog                string    `json:"changelog"`
	ComfyNodeExtractStatus   string    `json:"comfy_node_extract_status"`
	CreatedAt                time.Time `json:"createdAt"`
	Dependencies             []string  `json:"dependencies"`
	Deprecated               bool      `json:"deprecated"`
	DownloadURL              string    `json:"downloadUrl,omitempty"`
	ID                       string    `json:"id"`
	NodeID                   string    `json:"node_id"`
	Status                   string    `json:"status"`
	StatusReason             string    `json:"status_reason"`
	SupportedAccelerators    []string  `json:"supported_accelerators"`
	SupportedComfyUIFrontend string    `json:"supported_comfyui_frontend_version"`
	SupportedComfyUI         string    `json:"supported_comfyui_version"`
	SupportedOS              []string  `json:"supported_os"`
	Tags                     []string  `json:"tags"`
	TagsAdmin                []string  `json:"tags_admin"`
	Version                  string    `json:"version"`
}

func (s *Server) object(id string, i int, v Version, inList bool) nodeVersion {
	st := v.Status
	if st == "" {
		st = Active
	}
	nv := nodeVersion{
		Changelog: "changes of " + v.Version, ComfyNodeExtractStatus: "success",
		CreatedAt:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour),
		Dependencies: []string{}, Deprecated: v.Deprecated,
		DownloadURL: s.Files + "/" + id + "/" + v.Version + "/node.zip",
		ID:          fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, len(id)), NodeID: id,
		Status: st, StatusReason: v.StatusReason,
		SupportedAccelerators: []string{}, SupportedOS: []string{}, Tags: []string{}, TagsAdmin: []string{},
		Version: v.Version,
	}
	if inList && v.NoURLInList {
		nv.DownloadURL = ""
	}
	return nv
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.record("api", r)
	if r.Method != http.MethodGet {
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	nodes, err := s.source()
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) < 3 || parts[0] != "nodes" {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	id := parts[1]
	n, ok := nodes[id]
	if !ok {
		fail(w, http.StatusNotFound, "Node not found")
		return
	}
	if n.Banned {
		fail(w, http.StatusForbidden, "Node banned")
		return
	}
	find := func(ver string) (int, Version, bool) {
		for i, v := range n.Versions {
			if v.Version == ver {
				return i, v, true
			}
		}
		return 0, Version{}, false
	}
	switch {
	case len(parts) == 3 && parts[2] == "versions":
		want := r.URL.Query()["statuses"]
		out := []nodeVersion{}
		// Newest first, as the registry lists them.
		for i := len(n.Versions) - 1; i >= 0; i-- {
			nv := s.object(id, i, n.Versions[i], true)
			if len(want) > 0 && !contains(want, nv.Status) {
				continue
			}
			out = append(out, nv)
		}
		writeJSON(w, http.StatusOK, out)
	case len(parts) == 4 && parts[2] == "versions":
		i, v, ok := find(parts[3])
		if !ok {
			fail(w, http.StatusNotFound, "Node version not found")
			return
		}
		writeJSON(w, http.StatusOK, s.object(id, i, v, false))
	case len(parts) == 3 && parts[2] == "install":
		ver := r.URL.Query().Get("version")
		if ver == "" {
			// The newest active version.
			best := -1
			for i, v := range n.Versions {
				if v.Status == "" || v.Status == Active {
					best = i
				}
			}
			if best < 0 {
				fail(w, http.StatusNotFound, "Node version not found")
				return
			}
			writeJSON(w, http.StatusOK, s.object(id, best, n.Versions[best], false))
			return
		}
		i, v, ok := find(ver)
		if !ok {
			fail(w, http.StatusNotFound, "Node version not found")
			return
		}
		writeJSON(w, http.StatusOK, s.object(id, i, v, false))
	default:
		fail(w, http.StatusNotFound, "not found")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	s.record("files", r)
	nodes, err := s.source()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[2] != "node.zip" {
		http.NotFound(w, r)
		return
	}
	for _, v := range nodes[parts[0]].Versions {
		if v.Version != parts[1] {
			continue
		}
		data := v.Zip
		if data == nil {
			data = Zip(v.Files)
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
		return
	}
	http.NotFound(w, r)
}

// Zip returns a zip of files (name -> content), entries sorted by name, with fixed times; a
// name ending in "/" is a directory; a file whose name ends in "*" is executable (the "*" is
// dropped).
func Zip(files map[string]string) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		h := &zip.FileHeader{Name: strings.TrimSuffix(n, "*"), Method: zip.Deflate, Modified: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)}
		switch {
		case strings.HasSuffix(n, "/"):
			h.SetMode(0o755 | os.ModeDir)
		case strings.HasSuffix(n, "*"):
			h.SetMode(0o755)
		default:
			h.SetMode(0o644)
		}
		fw, err := zw.CreateHeader(h)
		if err != nil {
			panic(err)
		}
		if !strings.HasSuffix(n, "/") {
			_, _ = fw.Write([]byte(files[n]))
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
