package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner"
)

// s3OptionsFromEnvironment reads the S3 settings of s3 output, for run-handler and serve, with
// worker-comfyui's (RunPod rp_upload's) names: BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and
// BUCKET_SECRET_ACCESS_KEY; and ours: BUCKET_NAME, BUCKET_REGION, BUCKET_SESSION_TOKEN,
// BUCKET_ADDRESSING (auto, path or virtual) or BUCKET_PATH_STYLE (1 or 0), BUCKET_PREFIX,
// BUCKET_URL_TTL (seconds), BUCKET_PUBLIC_BASE_URL, BUCKET_RETRIES and BUCKET_VALIDATE (default
// 1: a probe object is written before any work). A malformed value is an error naming the
// variable; the secret is never part of an error.
func s3OptionsFromEnvironment() (runner.S3Options, error) {
	o := runner.S3Options{
		Endpoint:        strings.TrimSpace(os.Getenv("BUCKET_ENDPOINT_URL")),
		AccessKeyID:     os.Getenv("BUCKET_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("BUCKET_SECRET_ACCESS_KEY"),
		SessionToken:    os.Getenv("BUCKET_SESSION_TOKEN"),
		Bucket:          os.Getenv("BUCKET_NAME"),
		Region:          os.Getenv("BUCKET_REGION"),
		Addressing:      os.Getenv("BUCKET_ADDRESSING"),
		Prefix:          os.Getenv("BUCKET_PREFIX"),
		PublicBaseURL:   os.Getenv("BUCKET_PUBLIC_BASE_URL"),
		Validate:        true,
	}
	if o.Endpoint == "" {
		for _, name := range []string{"BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY", "BUCKET_NAME"} {
			if os.Getenv(name) != "" {
				return o, fmt.Errorf("%s is set but BUCKET_ENDPOINT_URL is not: S3 output needs the endpoint (e.g. https://<bucket>.s3.<region>.amazonaws.com)", name)
			}
		}
		return o, nil
	}
	var missing []string
	if o.AccessKeyID == "" {
		missing = append(missing, "BUCKET_ACCESS_KEY_ID")
	}
	if o.SecretAccessKey == "" {
		missing = append(missing, "BUCKET_SECRET_ACCESS_KEY")
	}
	if len(missing) > 0 {
		return o, fmt.Errorf("BUCKET_ENDPOINT_URL is set but %s is empty: S3 uploads need both BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY", strings.Join(missing, " and "))
	}
	if v := os.Getenv("BUCKET_PATH_STYLE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("BUCKET_PATH_STYLE=%q: want 1 or 0 (true or false)", v)
		}
		style := runner.S3AddressingVirtual
		if b {
			style = runner.S3AddressingPath
		}
		if o.Addressing != "" && o.Addressing != style {
			return o, fmt.Errorf("BUCKET_PATH_STYLE=%s and BUCKET_ADDRESSING=%s disagree; set one", v, o.Addressing)
		}
		o.Addressing = style
	}
	if v := os.Getenv("BUCKET_VALIDATE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("BUCKET_VALIDATE=%q: want 1 or 0 (true or false)", v)
		}
		o.Validate = b
	}
	if v := os.Getenv("BUCKET_URL_TTL"); v != "" {
		sec, err := strconv.Atoi(v)
		if err != nil || sec <= 0 || sec > 7*24*3600 {
			return o, fmt.Errorf("BUCKET_URL_TTL=%q: want seconds from 1 to 604800 (7 days)", v)
		}
		o.URLTTL = time.Duration(sec) * time.Second
	}
	if v := os.Getenv("BUCKET_RETRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 20 {
			return o, fmt.Errorf("BUCKET_RETRIES=%q: want a whole number from 0 to 20", v)
		}
		o.Retries = n
	}
	if _, err := runner.ParseS3Endpoint(o.Endpoint); err != nil {
		return o, fmt.Errorf("BUCKET_ENDPOINT_URL: %w", err)
	}
	return o, nil
}
