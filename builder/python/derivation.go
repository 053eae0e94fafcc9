package python

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// Logic versions of the builders: bump one when its output for the same inputs changes.
const (
	PythonVersion  = 1
	VenvVersion    = 2 // 2: composed from package objects, no pip
	PackageVersion = 1
)

// PythonParams are the python derivation's parameters: the interpreter identity.
type PythonParams struct {
	Interpreter specs.PythonIdentity `json:"interpreter"`
}

// PackageParams are a package derivation's parameters: the locked file (not its URL: the same
// file from another mirror makes the same object). Its input is the python derivation (the
// interpreter that compiles its bytecode). Installer is the interpreter's pip, which builds
// an sdist into a wheel; empty for a wheel, which no pip touches.
type PackageParams struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Filename  string `json:"filename"`
	SHA256    string `json:"sha256"`
	Installer string `json:"installer,omitempty"`

	Pin         specs.PackageLock    `json:"-"`
	Interpreter specs.PythonIdentity `json:"-"`
}

// VenvParams are the venv derivation's parameters; its inputs are the python derivation and
// one package derivation per pin, in the lock's order. Packages repeats the pins for people
// reading the derivation.
type VenvParams struct {
	Interpreter        specs.PythonIdentity `json:"interpreter"`
	SystemSitePackages bool                 `json:"system_site_packages"`
	SitePackages       []specs.Distribution `json:"site_packages,omitempty"`
	Packages           []Pin                `json:"packages"`
}

// Pin is one installed file as the venv derivation names it.
type Pin struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Filename string `json:"filename"`
	SHA256   string `json:"sha256"`
}

// Derivations returns the python derivation (the interpreter identity), one package
// derivation per locked file (input-addressed from the python derivation and the pin) and
// the venv derivation (from the python derivation, every package derivation and, with system
// site-packages, the distributions found there), all unsealed.
func Derivations(lock *specs.PythonLock, systemSitePackages bool) (python *drv.Derivation, packages []*drv.Derivation, venv *drv.Derivation) {
	python = &drv.Derivation{
		Kind:    drv.KindPython,
		Name:    "python-" + sanitizeName(lock.Interpreter.Version),
		Version: PythonVersion,
		Params:  &PythonParams{Interpreter: lock.Interpreter},
		Label:   "python " + lock.Interpreter.Version,
	}
	vp := &VenvParams{
		Interpreter:        lock.Interpreter,
		SystemSitePackages: systemSitePackages,
		Packages:           []Pin{},
	}
	if systemSitePackages {
		vp.SitePackages = append([]specs.Distribution{}, lock.SystemSitePackages...)
	}
	inputs := []*drv.Derivation{python}
	pyTag := "python" + pyVersionOf(lock.Interpreter.Version)
	for _, p := range lock.Packages {
		vp.Packages = append(vp.Packages, Pin{Name: p.Name, Version: p.Version, Filename: p.Filename, SHA256: p.SHA256})
		pp := &PackageParams{Name: p.Name, Version: p.Version, Filename: p.Filename, SHA256: p.SHA256, Pin: p, Interpreter: lock.Interpreter}
		if !isWheel(p.Filename) {
			pp.Installer = lock.Installer
		}
		pd := &drv.Derivation{
			Kind:    drv.KindPythonPackage,
			Name:    sanitizeName(pyTag + "-" + Normalize(p.Name) + "-" + p.Version),
			Version: PackageVersion,
			Inputs:  []*drv.Derivation{python},
			Params:  pp,
			Label:   fmt.Sprintf("python package %s %s", p.Name, p.Version),
		}
		packages = append(packages, pd)
		inputs = append(inputs, pd)
	}
	venv = &drv.Derivation{
		Kind:        drv.KindVenv,
		Name:        "venv",
		Version:     VenvVersion,
		Inputs:      inputs,
		Params:      vp,
		AtFinalPath: true,
		LinksInputs: true,
		Label:       fmt.Sprintf("venv (%d packages)", len(lock.Packages)),
	}
	return python, packages, venv
}

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+-._?=", r) {
			return r
		}
		return '_'
	}, s)
}

// Builder builds the python and venv kinds.
type Builder struct {
	// Fetch says where locked files come from (wheel cache, find_links, offline).
	Fetch FetchOptions
	// Environ is the environment the interpreter probe runs with; Env is added to the minimal
	// environment of pip and python children (see PassEnv).
	Environ []string
	Env     []string
	// Link makes the venv's hard links (nil: os.Link); Notice receives the venv's notices
	// when no progress task does. Tests set them.
	Link   func(oldname, newname string) error
	Notice func(msg string)
}

var _ drv.Builder = (*Builder)(nil)

// Build makes a python object (the identity as JSON, after checking the interpreter still
// has it) or a venv (Install at its final path).
func (b *Builder) Build(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
	switch d.Kind {
	case drv.KindPython:
		p, ok := d.Params.(*PythonParams)
		if !ok {
			return fmt.Errorf("%s: params are %T, want *PythonParams", d, d.Params)
		}
		if err := CheckInterpreter(ctx, p.Interpreter, "", nil, b.Environ); err != nil {
			return err
		}
		js, err := json.MarshalIndent(p.Interpreter, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(out, append(js, '\n'), 0o444)
	case drv.KindPythonPackage:
		p, ok := d.Params.(*PackageParams)
		if !ok {
			return fmt.Errorf("%s: params are %T, want *PackageParams", d, d.Params)
		}
		if bc != nil && bc.Task != nil {
			bc.Task.Status("installing " + p.Filename)
		}
		return BuildPackage(ctx, out, PackageOptions{Pin: p.Pin, Interpreter: p.Interpreter, Fetch: b.Fetch, Env: b.Env})
	case drv.KindVenv:
		p, ok := d.Params.(*VenvParams)
		if !ok {
			return fmt.Errorf("%s: params are %T, want *VenvParams", d, d.Params)
		}
		// With system site-packages the probe checks them too; otherwise Install compares the
		// version `python -m venv` writes into pyvenv.cfg with the lock's (a probe imports pip:
		// a second or more on a loaded machine, for a check the build's CheckLock made already).
		if p.SystemSitePackages {
			site := p.SitePackages
			if site == nil {
				site = []specs.Distribution{}
			}
			if err := CheckInterpreter(ctx, p.Interpreter, "", site, b.Environ); err != nil {
				return err
			}
		}
		vo := VenvOptions{Interpreter: p.Interpreter, SystemSitePackages: p.SystemSitePackages, Env: b.Env, Link: b.Link}
		for _, in := range d.Inputs {
			if in.Kind == drv.KindPythonPackage {
				vo.Packages = append(vo.Packages, bc.Input(in))
			}
		}
		if bc != nil && bc.Task != nil {
			bc.Task.Status(fmt.Sprintf("linking %d packages", len(vo.Packages)))
			task := bc.Task
			vo.Notice = func(msg string) { task.Logf("%s", msg) }
		}
		if vo.Notice == nil {
			vo.Notice = b.Notice
		}
		return Install(ctx, out, vo)
	default:
		return fmt.Errorf("python builder: unknown kind %q", d.Kind)
	}
}

// StaleError says the interpreter no longer matches the lock: resolve again.
type StaleError struct {
	Want, Got specs.PythonIdentity
	// SiteChanges lists site-packages differences ("numpy 1.26.0 -> 2.0.0", "+torch 2.1.0").
	SiteChanges []string
	// Installer is the lock's installer and the interpreter's, when they differ.
	Installer [2]string
	Err       error
}

func (e *StaleError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("the lock's interpreter %s is gone (%v): resolve the version again", e.Want.Path, e.Err)
	}
	if e.Installer[0] != "" {
		found := e.Installer[1]
		if found == "" {
			found = "no pip"
		}
		return fmt.Sprintf("the pip of %s changed since the lock was resolved (lock: %s; found: %s): resolve the version again", e.Want.Path, e.Installer[0], found)
	}
	if len(e.SiteChanges) > 0 {
		return fmt.Sprintf("the site-packages of %s changed since the lock was resolved (%s): resolve the version again", e.Want.Path, strings.Join(e.SiteChanges, ", "))
	}
	return fmt.Sprintf("the interpreter changed since the lock was resolved (lock: %s; found: %s): resolve the version again", describe(e.Want), describe(e.Got))
}

func describe(id specs.PythonIdentity) string {
	return fmt.Sprintf("%s %s %s %s at %s", id.Implementation, id.Version, id.ABI, id.Platform, id.Path)
}

// CheckInterpreter probes the interpreter at want.Path and returns a *StaleError when its
// identity, its pip (unless installer is empty: the venv is installed by the interpreter's pip,
// so another pip may write other bytes) or, with site non-nil, its site-packages differ from
// the lock's.
func CheckInterpreter(ctx context.Context, want specs.PythonIdentity, installer string, site []specs.Distribution, environ []string) error {
	in, err := Probe(ctx, want.Path, environ)
	if err != nil {
		return &StaleError{Want: want, Err: err}
	}
	if in.PythonIdentity != want {
		return &StaleError{Want: want, Got: in.PythonIdentity}
	}
	if installer != "" && in.Pip != installer {
		return &StaleError{Want: want, Got: in.PythonIdentity, Installer: [2]string{installer, in.Pip}}
	}
	if site != nil {
		if ch := siteChanges(site, in.SitePackages); len(ch) > 0 {
			return &StaleError{Want: want, Got: in.PythonIdentity, SiteChanges: ch}
		}
	}
	return nil
}

func siteChanges(old, cur []specs.Distribution) []string {
	o, c := map[string]string{}, map[string]string{}
	for _, d := range old {
		o[d.Name] = d.Version
	}
	for _, d := range cur {
		c[d.Name] = d.Version
	}
	var out []string
	for _, d := range old {
		if v, ok := c[d.Name]; !ok {
			out = append(out, "-"+d.Name+" "+d.Version)
		} else if v != d.Version {
			out = append(out, d.Name+" "+d.Version+" -> "+v)
		}
	}
	for _, d := range cur {
		if _, ok := o[d.Name]; !ok {
			out = append(out, "+"+d.Name+" "+d.Version)
		}
	}
	return out
}

// CacheDir is the wheel cache of a volume: ROOT/cache/runpod-comfy/pip.
func CacheDir(root string) string { return layout.New(root).Pip() }

// PassEnv picks from a whole environment what pip may need to reach an index (proxies,
// certificates); nothing else of the caller's environment reaches pip.
func PassEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT":
			out = append(out, kv)
		}
	}
	return out
}

// Realise builds the python, package and venv objects of lock into s, outside the builder's
// scheduler (tests, benchmarks, tools), and returns the venv's derivation and metadata. It
// uses the same store.Add options as builder.Realise.
func Realise(ctx context.Context, s *store.Store, lock *specs.PythonLock, systemSitePackages bool, b *Builder) (*drv.Derivation, *store.Meta, error) {
	py, pkgs, venv := Derivations(lock, systemSitePackages)
	all := append(append([]*drv.Derivation{py}, pkgs...), venv)
	var meta *store.Meta
	for _, d := range all {
		if err := d.Seal(); err != nil {
			return nil, nil, err
		}
		bc := &drv.BuildContext{Store: s}
		m, err := s.Add(ctx, d.Path, store.AddOptions{
			Kind:                d.Kind,
			References:          d.References(),
			Derivation:          d.CanonicalJSON(),
			AtFinalPath:         d.AtFinalPath,
			LinksFromReferences: d.LinksInputs,
		}, func(ctx context.Context, out string) error { return b.Build(ctx, bc, d, out) })
		if err != nil {
			return nil, nil, fmt.Errorf("building %s: %w", d, err)
		}
		meta = m
	}
	return venv, meta, nil
}

// installerIf is installer when anything is built with it (an sdist), else "".
func installerIf(installer string, used bool) string {
	if used {
		return installer
	}
	return ""
}
