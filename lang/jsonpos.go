package lang

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// jsonLists records, for the top-level arrays of objects of a JSON spec (custom_nodes, models),
// where each element starts, and which top-level keys hold something other than an array. The
// hcl JSON parser reads each element as a block but gives all of them the array's position;
// this walk gives each element its own.
type jsonLists struct {
	starts  map[string][]hcl.Range
	notList map[string]hcl.Range
	// notObject holds the top-level keys among objectKeys whose value is not an object.
	notObject map[string]hcl.Range
}

// objectKeys are the top-level keys of a JSON spec whose value must be an object (hcl would
// also take an array of objects as several blocks).
var objectKeys = map[string]bool{"comfy": true, "python": true, "options": true, "env": true}

func scanJSONLists(filename string, src []byte, keys ...string) jsonLists {
	out := jsonLists{starts: map[string][]hcl.Range{}, notList: map[string]hcl.Range{}, notObject: map[string]hcl.Range{}}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return out
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return out
		}
		key, _ := kt.(string)
		if objectKeys[key] {
			valStart := skipSpace(src, int(dec.InputOffset()))
			if valStart < len(src) && src[valStart] == ':' {
				valStart = skipSpace(src, valStart+1)
			}
			if valStart < len(src) && src[valStart] != '{' && src[valStart] != 'n' {
				out.notObject[key] = rangeAt(filename, src, valStart)
			}
		}
		if !want[key] {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return out
			}
			continue
		}
		valStart := skipSpace(src, int(dec.InputOffset()))
		if valStart < len(src) && src[valStart] == ':' {
			valStart = skipSpace(src, valStart+1)
		}
		if valStart >= len(src) || src[valStart] != '[' {
			out.notList[key] = rangeAt(filename, src, valStart)
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return out
			}
			continue
		}
		if _, err := dec.Token(); err != nil { // [
			return out
		}
		for dec.More() {
			start := skipSpace(src, int(dec.InputOffset()))
			if start < len(src) && src[start] == ',' {
				start = skipSpace(src, start+1)
			}
			out.starts[key] = append(out.starts[key], rangeAt(filename, src, start))
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return out
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return out
		}
	}
	return out
}

func skipSpace(src []byte, i int) int {
	for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
		i++
	}
	return i
}

// rangeAt is the one-character range at byte offset off of src, with hcl's 1-based line and
// column (columns count characters).
func rangeAt(filename string, src []byte, off int) hcl.Range {
	if off > len(src) {
		off = len(src)
	}
	line, col := 1, 1
	for i := 0; i < off; {
		r, size := utf8.DecodeRune(src[i:])
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
		i += size
	}
	p := hcl.Pos{Line: line, Column: col, Byte: off}
	return hcl.Range{Filename: filename, Start: p, End: hcl.Pos{Line: line, Column: col + 1, Byte: off + 1}}
}
