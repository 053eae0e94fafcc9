package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// ErrOffline is returned by Resolve when the lock does not pin the node and the build is
// offline.
var ErrOffline = errors.New("offline: the lock does not pin this registry node; resolve it once online")

// Resolver resolves registry nodes into the lock.
type Resolver struct {
	Client  *Client
	Fetcher *Fetcher
	Offline bool
}

// Resolve pins the registry node n. prev (may be nil) is the old lock's pin of the same node:
// it is kept when n asks for the same id and request and update is false. Otherwise the
// registry picks the version (Client.Pick); when that is prev's version at prev's URL its
// sha256 is kept, else the archive is downloaded into the cache and hashed. The warnings name
// deprecated or pending versions.
func (r *Resolver) Resolve(ctx context.Context, n specs.CustomNode, prev *specs.RegistryLock, update bool) (specs.RegistryLock, []string, error) {
	if prev != nil && prev.ID == n.Registry && prev.Request == n.Version && !update {
		return *prev, nil, nil
	}
	if r.Offline {
		return specs.RegistryLock{}, nil, ErrOffline
	}
	if r.Client == nil || r.Fetcher == nil {
		return specs.RegistryLock{}, nil, errors.New("no registry client configured")
	}
	nv, warns, err := r.Client.Pick(ctx, n.Registry, n.Version)
	if err != nil {
		return specs.RegistryLock{}, nil, err
	}
	l := specs.RegistryLock{ID: n.Registry, Request: n.Version, Version: nv.Version, URL: nv.DownloadURL}
	if prev != nil && prev.ID == l.ID && prev.Version == l.Version && prev.URL == l.URL && prev.SHA256 != "" {
		l.SHA256 = prev.SHA256
		return l, warns, nil
	}
	_, sum, err := r.Fetcher.Fetch(ctx, nv.DownloadURL, "")
	if err != nil {
		return specs.RegistryLock{}, nil, fmt.Errorf("%s@%s: %w", l.ID, l.Version, err)
	}
	l.SHA256 = "sha256:" + sum
	return l, warns, nil
}

// ReadFile reads name from the archive of the locked node l (fetched into the cache when
// missing, checked against the lock's sha256).
func (r *Resolver) ReadFile(ctx context.Context, l specs.RegistryLock, name string) ([]byte, error) {
	if r.Fetcher == nil {
		return nil, errors.New("no registry archive cache configured")
	}
	p, _, err := r.Fetcher.Fetch(ctx, l.URL, l.SHA256)
	if err != nil {
		return nil, err
	}
	return ReadFile(p, name)
}
