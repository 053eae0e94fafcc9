// Package model fetches model files into the store: the "model" kind of the builder.
//
// Words used here:
//
//   - Source: where a model comes from, as written in a spec: an http(s) URL, hf://owner/repo/
//     path[@revision] (a Hugging Face resolve URL), civitai://<model-version-id> or a
//     civitai.com download URL, a file:// URL or local path, or gs://bucket/object. A Source's
//     Raw text may carry credentials; Redacted is what logs and locks see.
//   - Checksum: the hash of the file's bytes, "sha256:<hex>" (the default) or "md5:<hex>".
//     It comes from the spec, else from the source's own metadata at resolve time (Hugging
//     Face's X-Linked-Etag on the first, unfollowed response; Civitai's files[].hashes.SHA256;
//     a GCS object's MD5), else from the first download (trusted on first use, with a warning),
//     and is recorded in the lock so every later build checks it.
//   - Fetcher: resolves sources (checksum, size, file name without downloading) and downloads
//     them, hashing in the same pass as the download: the content checksum and the NAR hash of
//     the file as a single-file store object, so the bytes are never read twice.
//   - Partial: a download in progress in the partial directory: "<key>.part" (the bytes so
//     far) and "<key>.state" (a checkpoint of the offset and of every hash's state, from
//     crypto's MarshalBinary). An interrupted download resumes with an HTTP Range request from
//     the checkpoint; "<key>.lock" keeps two processes off one partial.
//   - Ranged download: when the first answer of a try (to "Range: bytes=<offset>-") is a 206
//     with the right Content-Range, a known size and a validator, the rest of the file is
//     fetched in pieces over several connections (ranges.go), each answer checked to be exactly
//     its range of the same file; the pieces are hashed and written in order from their
//     buffers, so the partial stays a prefix and nothing is read back. A lying server falls
//     back to one connection; a changed file restarts from byte 0.
//   - Connections: Options.Connections caps one file's connections (default 8); the Fetcher's
//     budget of extra connections (Options.ConnectionBudget, default the same 8; each download
//     always has its first) and its 64 MiB pool of piece buffers are shared by all its
//     downloads, so several models at once stay within both.
//   - Retry: network errors, 408, 429 (honouring Retry-After) and 5xx are retried with
//     exponential backoff and jitter; a try that made progress resets the count.
//   - Tokens: the Hugging Face and Civitai tokens are given to the Fetcher (cmd reads HF_TOKEN
//     and CIVITAI_API_TOKEN) and sent, per request, only to their own endpoint's host: never to
//     a redirect target on another host, never to a log, a lock, metadata or the store.
//   - Model object: a fixed-output store object holding one read-only file, at the path of
//     store.FixedFingerprint(algo, hex, file name of the source), so two targets (or two
//     versions) naming the same file share one object. It is added through store.Add, so
//     nothing enters the store unless its checksum matches; the NAR hash computed during the
//     download is handed to the store (drv.BuildContext.KnownNar) so the file is not read again.
//   - Resolver: fills a lock's models (specs.ModelLock: target, redacted source, checksum, size,
//     checksum_from, store path); a model trusted on first use is downloaded straight into the
//     store while resolving. Builder: the drv.Builder of the "model" kind. Derivation: the
//     fixed derivation of one locked model, linked at models/<target> in the runtime root.
//   - Verify: checks every model of a lock in the store, or in an external models directory
//     (atomic replace), fetching what is missing (the verify-models command).
//
// Entry points (wired into package builder at its hook points):
//
//	func New(opts Options) (*Fetcher, error)
//	func (f *Fetcher) Resolve(ctx context.Context, src Source) (Remote, error)
//	func (f *Fetcher) Fetch(ctx context.Context, src Source, want Want, dst string, task *progress.Task) (Result, error)
//	func NewResolver(root string, opts Options, jobs int, display *progress.Display) (*Resolver, error)
//	func (r *Resolver) Resolve(ctx context.Context, spec *specs.Spec, old *specs.Lock, updating func(target string) bool) ([]specs.ModelLock, error)
//	func Derivation(m specs.ModelLock, pos specs.Pos) (*drv.Derivation, error)
//	func NewBuilder(opts Options, root string, spec *specs.Spec, display *progress.Display) *Builder
//	func Verify(ctx context.Context, opts VerifyOptions) ([]VerifyStatus, error)
package model
