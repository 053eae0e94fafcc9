package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// ErrNotSubstituted is wrapped by Substitute's error when no cache could provide an object
// (not present, or present but refused: bad signature, corrupt or truncated download). The
// caller then builds the object.
var ErrNotSubstituted = errors.New("not substituted")

// SourcePrefix starts the Meta.Source of every substituted object: "substituted:<cache url>".
const SourcePrefix = "substituted:"

// Substituter fetches objects from binary caches into a store.
type Substituter struct {
	// Caches are tried in order.
	Caches []Backend
	// TrustedKeys verify narinfo signatures.
	TrustedKeys []PublicKey
	// AllowUnsigned accepts narinfos without a signature by a trusted key (the NAR hash is
	// still checked against the narinfo). A signature by a trusted key that does not verify
	// is refused even then: it is evidence of tampering.
	AllowUnsigned bool
	// Warn, if set, receives one line per cache that had the object but was refused, and
	// why (before the next cache is tried).
	Warn func(msg string)

	infoMu sync.Mutex
	info   map[string]error // per cache URL: result of checking nix-cache-info
}

// Expect is what the caller (the builder, from the lock and the derivation) knows about an
// object before it asks a cache for it. A cache can only offer that object: a narinfo or NAR
// that disagrees is refused before anything is registered, and the next cache is tried.
type Expect struct {
	// NarHash, when set, is the NAR hash the lock records ("sha256:<nix32>"): a narinfo with
	// another NarHash is refused.
	NarHash string
	// Fingerprint, when set, is the object's fingerprint; for a fixed one (a model file) the
	// substituted file must have the sha256 or md5 it names (store.AddOptions.Fingerprint).
	Fingerprint string
	// References are the references the derivation says the object has. The narinfo must
	// list exactly these (its self-reference aside): one left out would let gc delete what
	// the object links to.
	References []store.Path
	// Kind, Derivation and CA, when set, are recorded in the metadata instead of the
	// narinfo's X-Kind, X-Derivation and CA, which signatures do not cover; a narinfo CA
	// that differs from CA is refused.
	Kind       string
	Derivation []byte
	CA         string
}

// Substitute makes p valid in st from the first cache that has it, substituting its missing
// references first. It is SubstituteExpect without expectations.
func (s *Substituter) Substitute(ctx context.Context, st *store.Store, p store.Path) (*store.Meta, error) {
	return s.SubstituteExpect(ctx, st, p, nil)
}

// SubstituteExpect makes p valid in st from the first cache that has it and agrees with want
// (nil: no expectations), substituting its missing references first. Each cache's narinfo is checked (store path, signature), the NAR is
// decompressed, hashed and unpacked in one stream into a staging directory, and the object is
// registered through store.Add with ExpectNarHash and Source "substituted:<cache url>". A
// cache that fails is reported through Warn and the next one is tried. When every cache
// fails, the error wraps ErrNotSubstituted and lists each cache's reason.
func (s *Substituter) SubstituteExpect(ctx context.Context, st *store.Store, p store.Path, want *Expect) (*store.Meta, error) {
	if m, err := st.Meta(p); err == nil {
		return m, nil
	}
	var reasons []string
	for _, b := range s.Caches {
		m, err := s.fromCache(ctx, st, b, p, want)
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, fs.ErrNotExist) {
			reasons = append(reasons, fmt.Sprintf("%s: not in the cache", b.URL()))
			continue
		}
		reasons = append(reasons, err.Error())
		if s.Warn != nil {
			s.Warn(fmt.Sprintf("warning: %v", err))
		}
	}
	if len(reasons) == 0 {
		return nil, fmt.Errorf("substituting %s: no substituters: %w", p, ErrNotSubstituted)
	}
	return nil, fmt.Errorf("substituting %s: %w: %s", p, ErrNotSubstituted, strings.Join(reasons, "; "))
}

// checkCache reads a cache's nix-cache-info once per Substituter.
func (s *Substituter) checkCache(ctx context.Context, b Backend) error {
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	if s.info == nil {
		s.info = map[string]error{}
	}
	if err, ok := s.info[b.URL()]; ok {
		return err
	}
	_, err := readCacheInfo(ctx, b)
	if err != nil && errors.Is(err, errNoCacheInfo) {
		err = fmt.Errorf("%w (%v)", fs.ErrNotExist, err) // an empty cache has nothing
	}
	// Remember a usable cache and an empty one; retry transient errors next time.
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		s.info[b.URL()] = err
	}
	return err
}

// FetchNarInfo reads and checks the narinfo of p in cache b: it must name p, and be signed
// by a trusted key unless unsigned narinfos are allowed. A missing narinfo wraps
// fs.ErrNotExist.
func (s *Substituter) FetchNarInfo(ctx context.Context, b Backend, p store.Path) (*NarInfo, error) {
	if err := s.checkCache(ctx, b); err != nil {
		return nil, err
	}
	key := narInfoKey(p)
	data, err := getAll(ctx, b, key, 16<<20)
	if err != nil {
		return nil, err
	}
	where := b.URL() + "/" + key
	ni, err := ParseNarInfo(data, where)
	if err != nil {
		return nil, fmt.Errorf("refusing %s: %w", where, err)
	}
	if ni.BaseName() != p.String() {
		return nil, fmt.Errorf("refusing %s: it describes %s, not %s", where, ni.BaseName(), p)
	}
	switch ni.Compression {
	case CompressionNone, CompressionZstd:
	default:
		return nil, fmt.Errorf("refusing %s: compression %q is not supported (none or zstd)", where, ni.Compression)
	}
	if err := ni.Verify(s.TrustedKeys); err != nil {
		if !(s.AllowUnsigned && errors.Is(err, ErrUnsigned)) {
			hint := ""
			if errors.Is(err, ErrUnsigned) {
				hint = " (pass the cache's public key with --trusted-key, or --no-require-sigs)"
			}
			return nil, fmt.Errorf("refusing %s: %w%s", where, err, hint)
		}
	}
	return ni, nil
}

// checkExpect refuses a narinfo that disagrees with what the caller knows about the object.
func checkExpect(ni *NarInfo, p store.Path, want *Expect, where string) error {
	if want == nil {
		return nil
	}
	if want.NarHash != "" && ni.NarHash != want.NarHash {
		return fmt.Errorf("refusing %s: NarHash %s, but the lock records %s for %s", where, ni.NarHash, want.NarHash, p)
	}
	if want.CA != "" && ni.CA != "" && ni.CA != want.CA {
		return fmt.Errorf("refusing %s: CA %s, but %s is %s", where, ni.CA, p, want.CA)
	}
	have := map[store.Path]bool{}
	for _, r := range ni.References {
		if r != p {
			have[r] = true
		}
	}
	need := map[store.Path]bool{}
	for _, r := range want.References {
		if r != p {
			need[r] = true
		}
	}
	var missing, extra []string
	for r := range need {
		if !have[r] {
			missing = append(missing, r.String())
		}
	}
	for r := range have {
		if !need[r] {
			extra = append(extra, r.String())
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	switch {
	case len(missing) > 0:
		return fmt.Errorf("refusing %s: its References leave out %s, which the derivation of %s needs", where, strings.Join(missing, ", "), p)
	case len(extra) > 0:
		return fmt.Errorf("refusing %s: its References add %s, which the derivation of %s does not name", where, strings.Join(extra, ", "), p)
	}
	return nil
}

func (s *Substituter) fromCache(ctx context.Context, st *store.Store, b Backend, p store.Path, want *Expect) (*store.Meta, error) {
	ni, err := s.FetchNarInfo(ctx, b, p)
	if err != nil {
		return nil, err
	}
	if err := checkExpect(ni, p, want, b.URL()+"/"+narInfoKey(p)); err != nil {
		return nil, err
	}
	refs := ni.References
	for _, r := range refs {
		if r == p || st.Valid(r) {
			continue
		}
		if _, err := s.Substitute(ctx, st, r); err != nil {
			return nil, fmt.Errorf("%s/%s: reference %s: %w", b.URL(), narInfoKey(p), r, err)
		}
	}
	opts := store.AddOptions{
		Kind:          ni.Kind,
		References:    refs,
		Derivation:    ni.Derivation,
		CA:            ni.CA,
		ExpectNarHash: ni.NarHash,
		Source:        SourcePrefix + b.URL(),
	}
	if want != nil {
		opts.Fingerprint = want.Fingerprint
		if want.Kind != "" {
			opts.Kind = want.Kind
		}
		if len(want.Derivation) > 0 {
			opts.Derivation = want.Derivation
		}
		if want.CA != "" {
			opts.CA = want.CA
		}
	}
	m, err := st.Add(ctx, p, opts, func(ctx context.Context, out string) error {
		return s.download(ctx, b, ni, out)
	})
	if err != nil {
		return nil, fmt.Errorf("substituting %s from %s: %w", p, b.URL(), err)
	}
	return m, nil
}

// download streams the NAR of ni from b through decompression into nar.Restore at out,
// hashing the file and the NAR on the way, and fails unless both match the narinfo.
func (s *Substituter) download(ctx context.Context, b Backend, ni *NarInfo, out string) error {
	where := b.URL() + "/" + ni.URL
	rc, err := b.Get(ctx, ni.URL)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("NAR %s is missing", where)
		}
		return err
	}
	defer rc.Close()
	fileH := newCountHash()
	fileR := io.TeeReader(rc, fileH)
	var narSrc io.Reader = fileR
	if ni.Compression == CompressionZstd {
		dec, err := zstd.NewReader(fileR, zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return err
		}
		defer dec.Close()
		narSrc = dec
	}
	narH := newCountHash()
	narR := io.TeeReader(io.LimitReader(narSrc, ni.NarSize+1), narH)
	restoreErr := nar.Restore(narR, out)
	// Whatever Restore left unread (trailing bytes) still counts towards size and hash.
	_, drainErr := io.Copy(io.Discard, narR)
	if restoreErr != nil || drainErr != nil {
		err := errors.Join(restoreErr, drainErr)
		return fmt.Errorf("NAR %s is truncated or corrupt (read %d of %d NAR bytes): %w", where, narH.n, ni.NarSize, err)
	}
	if narH.n != ni.NarSize || narH.String() != ni.NarHash {
		return fmt.Errorf("NAR %s does not match its narinfo: NAR hash %s (%d bytes), narinfo says %s (%d bytes)", where, narH.String(), narH.n, ni.NarHash, ni.NarSize)
	}
	if ni.FileHash != "" {
		// Read what is left of the file (e.g. the end of the zstd frame) before checking it.
		if _, err := io.Copy(io.Discard, fileR); err != nil {
			return fmt.Errorf("reading %s: %w", where, err)
		}
		if fileH.String() != ni.FileHash || fileH.n != ni.FileSize {
			return fmt.Errorf("file %s does not match its narinfo: sha256 %s (%d bytes), narinfo says %s (%d bytes)", where, fileH.String(), fileH.n, ni.FileHash, ni.FileSize)
		}
	}
	return nil
}
