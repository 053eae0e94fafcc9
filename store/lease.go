package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// errLeaseHeld means another live holder has the lease.
var errLeaseHeld = errors.New("lease held by another process")

// ErrLeaseLost is wrapped when a holder finds, before committing, that its lease was broken
// and taken by another process (it had stopped renewing for longer than the TTL).
var ErrLeaseLost = errors.New("lease lost")

// LeaseRecord is the content of a lease file (.locks/<digest>.lease, .locks/gc.lease).
type LeaseRecord struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Expires time.Time `json:"expires"`
	Nonce   string    `json:"nonce"`
	// Path is the object being built, References what it will reference: GC keeps both.
	Path       Path   `json:"path,omitzero"`
	References []Path `json:"references,omitempty"`
}

// Lease is a held lease: an O_CREAT|O_EXCL file renewed by a goroutine until Release.
type Lease struct {
	s    *Store
	file string
	mu   sync.Mutex
	rec  LeaseRecord
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (s *Store) leaseFile(name string) string { return filepath.Join(s.locksDir(), name+".lease") }

// stale reports whether a lease or temporary root record is dead: expired beyond the skew
// margin, or written by a process of this host that no longer runs.
func (s *Store) stale(host string, pid int, expires time.Time) bool {
	if s.now().After(expires.Add(s.skew)) {
		return true
	}
	return host == s.host && !processAlive(pid)
}

func readLeaseFile(file string) (*LeaseRecord, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r LeaseRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parsing lease %s: %w", file, err)
	}
	return &r, nil
}

// leaseStale judges the lease file: a readable record by its expiry and holder, an unreadable
// one (a crash between create and write) by its mtime.
func (s *Store) leaseStale(file string) (rec *LeaseRecord, stale bool, err error) {
	rec, err = readLeaseFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
		fi, serr := os.Stat(file)
		if serr != nil {
			return nil, false, serr
		}
		return nil, s.now().After(fi.ModTime().Add(s.leaseTTL + s.skew)), nil
	}
	return rec, s.stale(rec.Host, rec.PID, rec.Expires), nil
}

// createExclusive creates file holding data, failing with fs.ErrExist when it exists. The data
// is written to a temporary file first and hard-linked to its name, so the file never exists
// empty: a crash leaves either no lease or a whole record whose holder can be judged. Where
// hard links are unsupported it falls back to O_CREAT|O_EXCL and a write.
func createExclusive(file string, data []byte) error {
	tmp := file + ".new-" + randHex(6)
	if err := writeSynced(tmp, data, os.O_CREATE|os.O_EXCL|os.O_WRONLY); err != nil {
		return err
	}
	defer os.Remove(tmp)
	err := os.Link(tmp, file)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	// No hard links here (some network filesystems): create in place.
	if err := writeSynced(file, data, os.O_CREATE|os.O_EXCL|os.O_WRONLY); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			os.Remove(file)
		}
		return err
	}
	return nil
}

func writeSynced(file string, data []byte, flag int) error {
	f, err := os.OpenFile(file, flag, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// tryLease takes the lease name once. It breaks a stale lease by renaming it to a unique
// tombstone (of several breakers only one rename succeeds) and retries. When a live holder
// has it, it returns the holder's record and errLeaseHeld.
func (s *Store) tryLease(name string, p Path, refs []Path) (*Lease, *LeaseRecord, error) {
	file := s.leaseFile(name)
	for attempt := 0; attempt < 4; attempt++ {
		now := s.now().UTC()
		rec := LeaseRecord{Host: s.host, PID: s.pid, Started: now, Expires: now.Add(s.leaseTTL), Nonce: randHex(8), Path: p, References: refs}
		b, _ := json.Marshal(rec)
		err := createExclusive(file, b)
		if err == nil {
			l := &Lease{s: s, file: file, rec: rec, stop: make(chan struct{}), done: make(chan struct{})}
			go l.renew()
			return l, nil, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, nil, fmt.Errorf("taking lease %s: %w", file, err)
		}
		holder, stale, err := s.leaseStale(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading lease %s: %w", file, err)
		}
		if !stale {
			return nil, holder, errLeaseHeld
		}
		if err := s.breakLease(file, holder); err != nil {
			return nil, nil, err
		}
	}
	holder, _ := readLeaseFile(file)
	return nil, holder, errLeaseHeld
}

// breakLease removes a lease judged stale by renaming it to a unique tombstone. Breakers
// first take the short-lived break lock <lease>.break (O_CREAT|O_EXCL), then re-read the lease
// and break it only if it still holds the record judged stale: so a breaker can never take
// away a lease another process created after the stale one was removed. The caller retries
// the O_EXCL create afterwards; of several contenders exactly one gets the lease.
func (s *Store) breakLease(file string, judged *LeaseRecord) error {
	bl := file + ".break"
	mine, _ := json.Marshal(LeaseRecord{Host: s.host, PID: s.pid, Started: s.now().UTC(), Nonce: randHex(8)})
	err := createExclusive(bl, mine)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another breaker is at work. A break lock left by a crashed breaker goes at once
			// when that breaker ran on this host, else after a TTL.
			if other, rerr := readLeaseFile(bl); rerr == nil && other.Host == s.host && !processAlive(other.PID) {
				os.Remove(bl)
			} else if fi, err := os.Stat(bl); err == nil && s.now().After(fi.ModTime().Add(s.leaseTTL)) {
				os.Remove(bl)
			}
			return nil
		}
		return fmt.Errorf("breaking stale lease %s: %w", file, err)
	}
	defer os.Remove(bl)
	cur, stale, err := s.leaseStale(file)
	if err != nil || !stale {
		return nil // gone, or renewed meanwhile
	}
	if (judged == nil) != (cur == nil) || (judged != nil && cur.Nonce != judged.Nonce) {
		return nil // not the lease we judged: look again
	}
	tomb := file + ".broken-" + randHex(6)
	if err := os.Rename(file, tomb); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("breaking stale lease %s: %w", file, err)
	}
	os.Remove(tomb)
	return nil
}

// renew rewrites the lease with a later expiry every third of the TTL until Release. It stops
// renewing when the file no longer holds its nonce (the lease was broken).
func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.s.leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if !l.owned() {
				return
			}
			l.mu.Lock()
			l.rec.Expires = l.s.now().UTC().Add(l.s.leaseTTL)
			b, _ := json.Marshal(l.rec)
			l.mu.Unlock()
			tmp := filepath.Join(filepath.Dir(l.file), ".tmp-"+filepath.Base(l.file)+"-"+randHex(6))
			if err := os.WriteFile(tmp, b, 0o644); err == nil {
				if os.Rename(tmp, l.file) != nil {
					os.Remove(tmp)
				}
			}
		}
	}
}

func (l *Lease) owned() bool {
	r, err := readLeaseFile(l.file)
	return err == nil && r.Nonce == l.rec.Nonce
}

// Check returns an error wrapping ErrLeaseLost when the lease file no longer holds this lease.
func (l *Lease) Check() error {
	if !l.owned() {
		return fmt.Errorf("%s: %w", l.file, ErrLeaseLost)
	}
	return nil
}

// Release stops renewal and removes the lease file if it is still this lease's.
func (l *Lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		if l.owned() {
			os.Remove(l.file)
		}
	})
}

type liveLease struct {
	name string // file name without ".lease": a digest, or "gc"
	rec  *LeaseRecord
}

// liveLeases returns every lease that is not stale.
func (s *Store) liveLeases() ([]liveLease, error) {
	ents, err := os.ReadDir(s.locksDir())
	if err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	var out []liveLease
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".lease") {
			continue
		}
		rec, stale, err := s.leaseStale(filepath.Join(s.locksDir(), e.Name()))
		if err != nil || stale {
			continue
		}
		if rec == nil {
			rec = &LeaseRecord{} // unreadable but fresh: it holds nothing we can name
		}
		out = append(out, liveLease{name: strings.TrimSuffix(e.Name(), ".lease"), rec: rec})
	}
	return out, nil
}
