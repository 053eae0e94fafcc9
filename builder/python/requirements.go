package python

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Origin is where a requirement was written: a line of a requirements file of ComfyUI or of a
// node, an entry of the spec, or the interpreter's own site-packages.
type Origin struct {
	// Node is the custom node's name; empty for ComfyUI, the spec and site-packages.
	Node string
	// File is the file as shown to users, e.g. "custom_nodes/A/requirements.txt",
	// "comfyui/requirements.txt", "spec" or "site-packages".
	File string
	// Line is the 1-based line in File; 0 for the spec and site-packages.
	Line int
	// Field names the spec entry, e.g. "python.packages[0]".
	Field string
}

// String formats the origin as the lock's requested_by does: "file:line",
// "spec:python.packages[0]" or "site-packages".
func (o Origin) String() string {
	switch {
	case o.Field != "":
		return o.File + ":" + o.Field
	case o.Line > 0:
		return o.File + ":" + strconv.Itoa(o.Line)
	default:
		return o.File
	}
}

// Who names the party that asked: `node "A"`, "ComfyUI", "the spec" or "the interpreter's
// site-packages".
func (o Origin) Who() string {
	switch {
	case o.Node != "":
		return fmt.Sprintf("node %q", o.Node)
	case o.File == fileSpec:
		return "the spec"
	case o.File == fileSitePackages:
		return "the interpreter's site-packages"
	case o.File == fileDependency:
		return "a dependency"
	default:
		return "ComfyUI"
	}
}

const (
	fileSpec         = "spec"
	fileSitePackages = "site-packages"
	fileDependency   = "dependency"
)

// Requirement is one requirement line: its text as pip reads it (comments and per-line options
// removed), the normalised project name, and where it was written.
type Requirement struct {
	Text   string
	Name   string
	Origin Origin
}

// Requirements is everything gathered for one resolution.
type Requirements struct {
	// Requires are the requirements to install; Constraints only bound versions.
	Requires    []Requirement
	Constraints []Requirement
	// ExtraIndexURLs and FindLinks were named inside requirements files.
	ExtraIndexURLs []string
	FindLinks      []string
	// Warnings are options that were ignored or reinterpreted, each naming its file and line.
	Warnings []string
}

// Source is a tree whose requirements.txt is gathered: ComfyUI's or one node's.
type Source struct {
	// Node is the node's name; empty for ComfyUI.
	Node string
	// ReadFile reads a file of the tree by its slash-separated path relative to the tree's top,
	// returning an error matching fs.ErrNotExist when there is none.
	ReadFile func(ctx context.Context, name string) ([]byte, error)
}

func (s Source) label(name string) string {
	if s.Node == "" {
		return "comfyui/" + name
	}
	return "custom_nodes/" + s.Node + "/" + name
}

// SourceError is a requirements file that could not be read from its source (other than
// being absent); it names the node (or ComfyUI) and its spec position.
type SourceError struct {
	// Node is the custom node's name; empty for ComfyUI.
	Node string
	Pos  specs.Pos
	// File is the file's path in the source, e.g. "requirements.txt".
	File string
	Err  error
}

func (e *SourceError) Error() string {
	who := "comfy"
	if e.Node != "" {
		who = fmt.Sprintf("custom node %q", e.Node)
	}
	msg := fmt.Sprintf("%s: reading %s: %v", who, e.File, e.Err)
	if p := e.Pos.String(); p != "" {
		return p + ": " + msg
	}
	return msg
}

func (e *SourceError) Unwrap() error { return e.Err }

// Gather reads requirements.txt of each source (a missing file is no requirements) and adds the
// spec's python.packages and python.constraints.
func Gather(ctx context.Context, sources []Source, py *specs.Python) (*Requirements, error) {
	r := &Requirements{}
	for _, src := range sources {
		if err := r.addFile(ctx, src, "requirements.txt", false, 0, true); err != nil {
			return nil, err
		}
	}
	if py != nil {
		for i, p := range py.Packages {
			o := Origin{File: fileSpec, Field: fmt.Sprintf("python.packages[%d]", i)}
			req, err := parseRequirement(p, o)
			if err != nil {
				return nil, err
			}
			r.Requires = append(r.Requires, req)
		}
		for i, p := range py.Constraints {
			o := Origin{File: fileSpec, Field: fmt.Sprintf("python.constraints[%d]", i)}
			req, err := parseRequirement(p, o)
			if err != nil {
				return nil, err
			}
			r.Constraints = append(r.Constraints, req)
		}
	}
	return r, nil
}

// ParseFile adds the requirements of one file's bytes, as read from src at name; nested -r and
// -c files are read through src.
func (r *Requirements) ParseFile(ctx context.Context, src Source, name string, data []byte) error {
	return r.parse(ctx, src, name, data, false, 0)
}

const maxNesting = 8

func (r *Requirements) addFile(ctx context.Context, src Source, name string, constraint bool, depth int, top bool) error {
	data, err := src.ReadFile(ctx, name)
	if err != nil {
		if top && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		var se *SourceError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("reading %s: %w", src.label(name), err)
	}
	return r.parse(ctx, src, name, data, constraint, depth)
}

var (
	optionRe   = regexp.MustCompile(`^(-[a-zA-Z]|--[a-z][a-z-]*)(?:[ =]\s*(.*))?$`)
	lineOptsRe = regexp.MustCompile(`\s+--?[a-zA-Z]`)
	nameRe     = regexp.MustCompile(`^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$`)
)

func (r *Requirements) parse(ctx context.Context, src Source, name string, data []byte, constraint bool, depth int) error {
	label := src.label(name)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo, startLine := 0, 0
	var logical strings.Builder
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if logical.Len() == 0 {
			startLine = lineNo
		}
		if strings.HasSuffix(line, `\`) {
			logical.WriteString(strings.TrimSuffix(line, `\`))
			continue
		}
		logical.WriteString(line)
		text := logical.String()
		logical.Reset()
		if err := r.parseLine(ctx, src, name, label, text, startLine, constraint, depth); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", label, err)
	}
	if logical.Len() > 0 {
		return r.parseLine(ctx, src, name, label, logical.String(), startLine, constraint, depth)
	}
	return nil
}

func (r *Requirements) parseLine(ctx context.Context, src Source, name, label, text string, line int, constraint bool, depth int) error {
	text = strings.TrimPrefix(text, "\ufeff")
	if i := strings.Index(text, "#"); i == 0 || (i > 0 && (text[i-1] == ' ' || text[i-1] == '\t')) {
		text = text[:i]
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	o := Origin{Node: src.Node, File: label, Line: line}
	if strings.HasPrefix(text, "-") {
		m := optionRe.FindStringSubmatch(text)
		opt, arg := text, ""
		if m != nil {
			opt, arg = m[1], strings.TrimSpace(m[2])
		} else if len(text) > 2 && text[1] != '-' {
			opt, arg = text[:2], strings.TrimSpace(text[2:])
		}
		switch opt {
		case "-r", "--requirement", "-c", "--constraint":
			if arg == "" {
				return fmt.Errorf("%s: %s needs a file name", o, opt)
			}
			if depth >= maxNesting {
				return fmt.Errorf("%s: requirement files nested more than %d deep", o, maxNesting)
			}
			if strings.Contains(arg, "://") || path.IsAbs(arg) {
				return fmt.Errorf("%s: %s %s: only files inside the same tree can be included", o, opt, arg)
			}
			nested := path.Clean(path.Join(path.Dir(name), arg))
			if strings.HasPrefix(nested, "../") || nested == ".." {
				return fmt.Errorf("%s: %s %s points outside the tree", o, opt, arg)
			}
			return r.addFile(ctx, src, nested, constraint || opt == "-c" || opt == "--constraint", depth+1, false)
		case "-i", "--index-url", "--extra-index-url":
			if arg == "" {
				return fmt.Errorf("%s: %s needs a URL", o, opt)
			}
			if opt != "--extra-index-url" {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s %s is used as an extra index (the spec's index_url stays the main one)", o, opt, redactURL(arg)))
			}
			r.ExtraIndexURLs = appendNew(r.ExtraIndexURLs, arg)
			return nil
		case "-f", "--find-links":
			if !strings.HasPrefix(arg, "http://") && !strings.HasPrefix(arg, "https://") {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s %s ignored: only http(s) find-links can be used from a requirements file", o, opt, arg))
				return nil
			}
			r.FindLinks = appendNew(r.FindLinks, arg)
			return nil
		case "-e", "--editable":
			return fmt.Errorf("%s: editable requirement %q cannot be pinned to a file with a sha256", o, arg)
		default:
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: option %s ignored", o, opt))
			return nil
		}
	}
	if loc := lineOptsRe.FindStringIndex(text); loc != nil {
		text = strings.TrimSpace(text[:loc[0]])
	}
	req, err := parseRequirement(text, o)
	if err != nil {
		return err
	}
	if constraint {
		r.Constraints = append(r.Constraints, req)
	} else {
		r.Requires = append(r.Requires, req)
	}
	return nil
}

func parseRequirement(text string, o Origin) (Requirement, error) {
	text = strings.TrimSpace(text)
	m := nameRe.FindStringSubmatch(text)
	if m == nil || strings.Contains(text, "://") && !strings.Contains(text, "@") {
		return Requirement{}, fmt.Errorf("%s: %q is not a named requirement (a bare URL or path cannot be pinned)", o, text)
	}
	rest := strings.TrimSpace(m[3])
	if strings.HasPrefix(rest, "@") && regexp.MustCompile(`(?i)@\s*(git|hg|svn|bzr)\+`).MatchString(rest) {
		return Requirement{}, fmt.Errorf("%s: %q is a VCS requirement: it cannot be pinned to a file with a sha256; publish a wheel and list it in python.find_links", o, text)
	}
	if rest != "" && !strings.ContainsAny(rest[:1], "<>=!~;@(,") {
		return Requirement{}, fmt.Errorf("%s: %q is not a valid requirement", o, text)
	}
	return Requirement{Text: text, Name: Normalize(m[1]), Origin: o}, nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
