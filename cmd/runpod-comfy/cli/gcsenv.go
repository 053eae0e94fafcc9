package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner"
)

// gcsOptionsFromEnvironment reads the GCS settings of gcs output, for run-handler and serve,
// with the seed's variable names: GCS_BUCKET and GCS_PREFIX (unless bucket and prefix come from
// flags), GOOGLE_CLOUD_PROJECT or GCS_PROJECT, GOOGLE_APPLICATION_CREDENTIALS (or
// GCS_CREDENTIALS_FILE, or the key itself in GCS_CREDENTIALS_JSON), GCS_PUBLIC and GCS_VALIDATE
// ("1" or "true"), GCS_RETRIES, GCS_RETRY_BASE_SLEEP and GCS_SIGNED_URL_TTL (seconds),
// GCS_PUBLIC_BASE_URL, and GCS_ENDPOINT (an emulator). A malformed value is an error naming
// the variable.
func gcsOptionsFromEnvironment(bucket, prefix string) (runner.GCSOptions, error) {
	g := runner.GCSOptions{
		Bucket:          firstNonEmpty(bucket, os.Getenv("GCS_BUCKET")),
		Prefix:          strings.Trim(firstNonEmpty(prefix, os.Getenv("GCS_PREFIX")), "/"),
		Project:         firstNonEmpty(os.Getenv("GOOGLE_CLOUD_PROJECT"), os.Getenv("GCS_PROJECT")),
		CredentialsFile: firstNonEmpty(os.Getenv("GCS_CREDENTIALS_FILE"), os.Getenv("GOOGLE_APPLICATION_CREDENTIALS")),
		Endpoint:        os.Getenv("GCS_ENDPOINT"),
		PublicBaseURL:   os.Getenv("GCS_PUBLIC_BASE_URL"),
		Retries:         3,
		RetryBaseSleep:  time.Second,
		SignedURLTTL:    time.Hour,
	}
	if j := os.Getenv("GCS_CREDENTIALS_JSON"); j != "" {
		g.CredentialsJSON = []byte(j)
	}
	for name, dst := range map[string]*bool{"GCS_PUBLIC": &g.Public, "GCS_VALIDATE": &g.Validate} {
		if v := os.Getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return g, fmt.Errorf("%s=%q: want 1 or 0 (true or false)", name, v)
			}
			*dst = b
		}
	}
	if v := os.Getenv("GCS_RETRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return g, fmt.Errorf("GCS_RETRIES=%q: want a whole number >= 0", v)
		}
		g.Retries = n
	}
	if v := os.Getenv("GCS_RETRY_BASE_SLEEP"); v != "" {
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil || sec < 0 {
			return g, fmt.Errorf("GCS_RETRY_BASE_SLEEP=%q: want seconds", v)
		}
		g.RetryBaseSleep = time.Duration(sec * float64(time.Second))
	}
	if v := os.Getenv("GCS_SIGNED_URL_TTL"); v != "" {
		sec, err := strconv.Atoi(v)
		if err != nil || sec < 0 {
			return g, fmt.Errorf("GCS_SIGNED_URL_TTL=%q: want seconds (0: no signed URL)", v)
		}
		if sec == 0 {
			// The seed tool's meaning: no signed URL; the object's plain https URL is given.
			g.Public = true
		} else {
			g.SignedURLTTL = time.Duration(sec) * time.Second
		}
	}
	if g.Endpoint != "" {
		// An emulator: signed URLs point at it too.
		host := strings.TrimPrefix(strings.TrimPrefix(g.Endpoint, "http://"), "https://")
		g.SignedURLHost = strings.SplitN(host, "/", 2)[0]
		g.SignedURLInsecure = strings.HasPrefix(g.Endpoint, "http://")
		if !strings.Contains(g.Endpoint, "/storage/v1") {
			g.Endpoint = strings.TrimRight(g.Endpoint, "/") + "/storage/v1/"
		}
	}
	return g, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
