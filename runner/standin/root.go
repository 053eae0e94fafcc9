package standin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/runpod-comfy/runpod-comfy/internal/comfypaths"
	"github.com/runpod-comfy/runpod-comfy/internal/registrytest"
	"github.com/runpod-comfy/runpod-comfy/internal/s3test"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// WriteRootFiles writes the generated files of a runtime root into dir as the builder
// writes them (extra_model_paths.yaml and bin/comfyui, from internal/comfypaths): for the
// model folders (models/<folder>) and, when nodes is true, custom_nodes. Those directories
// must exist in the root: real ComfyUI, and the stand-in, refuse to start without a
// custom_nodes folder the yaml names.
func WriteRootFiles(dir, id string, folders []string, nodes bool) error {
	entries := comfypaths.RootEntries(folders, nodes)
	y, err := comfypaths.RootYAML(id, entries)
	if err != nil {
		return fmt.Errorf("writing root: %w", err)
	}
	sh, err := comfypaths.Launcher(id, entries)
	if err != nil {
		return fmt.Errorf("writing root: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return fmt.Errorf("writing root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "extra_model_paths.yaml"), y, 0o644); err != nil {
		return fmt.Errorf("writing root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "comfyui"), []byte(sh), 0o755); err != nil {
		return fmt.Errorf("writing root: %w", err)
	}
	return nil
}

// RootOptions describe a runtime root made by hand by WriteRoot.
type RootOptions struct {
	// VersionID names the version (manifest version_id); default "standin".
	VersionID string
	// CustomNodes are node name -> files (relative path -> content).
	CustomNodes map[string]map[string]string
	// Writable lists the custom nodes marked writable in the manifest.
	Writable []string
	// Models are target paths below models/ (e.g. "checkpoints/tiny.safetensors") -> content.
	Models map[string]string
	// Env is the manifest's env.
	Env map[string]string
	// Flags overrides the manifest's comfy.flags (default: Flags()).
	Flags []string
}

// WriteRoot makes a runtime root by hand in the shared layout (comfyui/, custom_nodes/ when
// it has nodes, models/ when it has models, extra_model_paths.yaml, bin/comfyui,
// manifest.json) with the stand-in as ComfyUI.
// Objects are plain directories here, not store objects; it is for tests of code that runs a
// root, before or without the builder.
func WriteRoot(dir string, o RootOptions) error {
	if o.VersionID == "" {
		o.VersionID = "standin"
	}
	if err := WriteTree(filepath.Join(dir, "comfyui")); err != nil {
		return err
	}
	m := specs.Manifest{
		ManifestVersion: specs.ManifestVersion,
		VersionID:       o.VersionID,
		Comfy:           specs.ManifestComfy{Commit: "standin", StorePath: "standin-comfyui", Flags: o.Flags},
		Env:             o.Env,
		CustomNodes:     []specs.ManifestNode{},
		Models:          []specs.ManifestModel{},
	}
	if m.Comfy.Flags == nil {
		m.Comfy.Flags = Flags()
	}
	writable := map[string]bool{}
	for _, n := range o.Writable {
		writable[n] = true
	}
	names := make([]string, 0, len(o.CustomNodes))
	for n := range o.CustomNodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for rel, content := range o.CustomNodes[n] {
			p := filepath.Join(dir, "custom_nodes", n, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("writing root: %w", err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return fmt.Errorf("writing root: %w", err)
			}
		}
		m.CustomNodes = append(m.CustomNodes, specs.ManifestNode{Name: n, Commit: "standin", StorePath: "standin-" + n, Writable: writable[n]})
	}
	subdirs := map[string]bool{}
	targets := make([]string, 0, len(o.Models))
	for t := range o.Models {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	for _, t := range targets {
		p := filepath.Join(dir, "models", filepath.FromSlash(t))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("writing root: %w", err)
		}
		if err := os.WriteFile(p, []byte(o.Models[t]), 0o644); err != nil {
			return fmt.Errorf("writing root: %w", err)
		}
		subdirs[strings.SplitN(t, "/", 2)[0]] = true
		m.Models = append(m.Models, specs.ManifestModel{Target: t, StorePath: "standin-" + filepath.Base(t), Size: int64(len(o.Models[t]))})
	}
	folders := make([]string, 0, len(subdirs))
	for s := range subdirs {
		folders = append(folders, s)
	}
	sort.Strings(folders)
	if err := WriteRootFiles(dir, o.VersionID, folders, len(names) > 0); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing root: %w", err)
	}
	return nil
}

// Main is the "standin" helper command of CLI test scripts:
//
//	standin tree DIR              write the stand-in's files into DIR
//	standin repo DIR              ... and make DIR a git repository; prints the commit
//	standin root DIR [ID]         write a runtime root by hand into DIR (manifest version ID)
//	standin flags                 print the flags of comfy/cli_args.py
//	standin fakegcs FILE BUCKET   serve an in-memory GCS (fake-gcs-server) with BUCKET until
//	                              killed; its URL is written to FILE once it listens
//	standin fakes3 FILE BUCKET KEY SECRET
//	                              serve an in-memory S3 that checks SigV4 (internal/s3test)
//	                              with BUCKET and the key pair KEY, SECRET until killed; its
//	                              URL is written to FILE once it listens
//	standin registry FILE NODES   serve a Comfy Registry (internal/registrytest) of the nodes in
//	                              the JSON file NODES ({"<id>": {"versions": [{"version": "1.0.0",
//	                              "files": {...}}]}}, read again on every request) until killed;
//	                              its URL is written to FILE once it listens
func Main(args []string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "standin:", err)
		return 1
	}
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: standin tree|repo|root DIR [ID] | flags | fakegcs FILE BUCKET | fakes3 FILE BUCKET KEY SECRET | registry FILE NODES")
		return 2
	}
	switch {
	case args[0] == "flags":
		fmt.Println(strings.Join(Flags(), "\n"))
		return 0
	case len(args) >= 2 && args[0] == "tree":
		if err := WriteTree(args[1]); err != nil {
			return fail(err)
		}
		return 0
	case len(args) >= 2 && args[0] == "repo":
		commit, err := WriteRepo(context.Background(), args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println(commit)
		return 0
	case len(args) >= 3 && args[0] == "fakegcs":
		return fakeGCS(args[1], args[2])
	case len(args) >= 5 && args[0] == "fakes3":
		return fakeS3(args[1], args[2], args[3], args[4])
	case len(args) >= 3 && args[0] == "registry":
		return fakeRegistry(args[1], args[2])
	case len(args) >= 2 && args[0] == "root":
		o := RootOptions{Models: map[string]string{"checkpoints/tiny.safetensors": "not really a model\n"}}
		if len(args) >= 3 {
			o.VersionID = args[2]
		}
		if err := WriteRoot(args[1], o); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: standin tree|repo|root DIR [ID] | flags | fakegcs FILE BUCKET | fakes3 FILE BUCKET KEY SECRET | registry FILE NODES")
	return 2
}

// fakeGCS runs fake-gcs-server on loopback until the process is killed.
func fakeGCS(urlFile, bucket string) int {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin fakegcs:", err)
		return 1
	}
	defer srv.Stop()
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	return serveUntilKilled("fakegcs", urlFile, srv.URL())
}

// fakeS3 runs the SigV4-checking S3 of internal/s3test on loopback until the process is
// killed.
func fakeS3(urlFile, bucket, key, secret string) int {
	srv, err := s3test.Start(s3test.Options{AccessKey: key, Secret: secret, Buckets: []string{bucket}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin fakes3:", err)
		return 1
	}
	defer srv.Close()
	return serveUntilKilled("fakes3", urlFile, srv.URL)
}

// serveUntilKilled writes url to urlFile (atomically, so a script polling for it never reads
// half of it) and waits for SIGINT or SIGTERM.
func serveUntilKilled(name, urlFile, url string) int {
	if err := os.WriteFile(urlFile+".tmp", []byte(url), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "standin %s: %v\n", name, err)
		return 1
	}
	if err := os.Rename(urlFile+".tmp", urlFile); err != nil {
		fmt.Fprintf(os.Stderr, "standin %s: %v\n", name, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return 0
}

// fakeRegistry serves the Comfy Registry of internal/registrytest on loopback until the
// process is killed; the nodes are read from nodesFile on every request.
func fakeRegistry(urlFile, nodesFile string) int {
	srv := registrytest.Start(func() (map[string]registrytest.Node, error) {
		data, err := os.ReadFile(nodesFile)
		if err != nil {
			return nil, err
		}
		var nodes map[string]registrytest.Node
		if err := json.Unmarshal(data, &nodes); err != nil {
			return nil, fmt.Errorf("%s: %w", nodesFile, err)
		}
		return nodes, nil
	})
	defer srv.Close()
	return serveUntilKilled("registry", urlFile, srv.URL)
}
