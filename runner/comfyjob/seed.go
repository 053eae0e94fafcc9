package comfyjob

import (
	"encoding/base64"
	"path"

	"github.com/runpod-comfy/runpod-comfy/runner"
)

// seedGCSPrefix is the object prefix the seed tool used when GCS_PREFIX was not set.
const seedGCSPrefix = "comfy/outputs"

// SeedOutput are the fields the seed tool's handler returned, with the same meaning, given
// beside ours for result_format seed (version_id and output_mode are ours already). The seed
// returned one artifact: every saved image and video of the run, their bytes joined, with the
// first one's extension.
type SeedOutput struct {
	// Size is the artifact's size in bytes; Extension the first file's, e.g. ".png".
	Size      int64  `json:"size"`
	Extension string `json:"extension"`
	// Base64 is the artifact (base64 output mode).
	Base64 *string `json:"base64,omitempty"`
	// URL is https://storage.googleapis.com/<bucket>/<object> (or the public base URL),
	// GCSPath gs://<bucket>/<object>, SignedURL a signed URL when URLs are signed
	// (GCS_SIGNED_URL_TTL set and not 0, GCS_PUBLIC not set); of the first artifact, since
	// each output is its own object here (gcs output mode).
	URL       string `json:"url,omitempty"`
	GCSPath   string `json:"gcs_path,omitempty"`
	SignedURL string `json:"signed_url,omitempty"`
}

// seedOutput makes the seed tool's fields of a delivered run.
func seedOutput(mode string, outs []*runner.Output, public bool) *SeedOutput {
	var arts []*runner.Output
	for _, o := range outs {
		if o.Type == "output" && (o.Kind == runner.KindImage || o.Kind == runner.KindVideo) {
			arts = append(arts, o)
		}
	}
	so := &SeedOutput{}
	for _, o := range arts {
		so.Size += o.Size
	}
	if len(arts) > 0 {
		so.Extension = path.Ext(arts[0].Filename)
		if so.Extension == "" {
			so.Extension = ".bin"
		}
	}
	if mode == runner.SinkBase64 {
		var joined []byte
		for _, o := range arts {
			if b, err := base64.StdEncoding.DecodeString(o.Data); err == nil {
				joined = append(joined, b...)
			}
		}
		s := base64.StdEncoding.EncodeToString(joined)
		so.Base64 = &s
		return so
	}
	if mode == runner.SinkGCS && len(arts) > 0 {
		a := arts[0]
		so.URL, so.GCSPath = a.PublicURL, a.GCSPath
		if !public && a.URL != "" {
			so.SignedURL = a.URL
		}
	}
	return so
}
