package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Decode parses a JSON value written by AppendJSON back into Fields,
// keeping integers exact. Consumers in Go (and this project's tests) use it;
// consumers in other languages follow the schema in record.schema.json.
func Decode(value []byte) (Fields, error) {
	var raw struct {
		Schema     int             `json:"schema"`
		Gateway    string          `json:"gateway"`
		Device     string          `json:"device"`
		Tag        string          `json:"tag"`
		Seq        json.Number     `json:"seq"`
		Type       string          `json:"type"`
		Value      json.RawMessage `json:"value"`
		Quality    string          `json:"quality"`
		ReadTime   time.Time       `json:"read_time"`
		SourceTime *time.Time      `json:"source_time"`
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Fields{}, fmt.Errorf("decode record: %w", err)
	}
	if raw.Schema != SchemaVersion {
		return Fields{}, fmt.Errorf("decode record: schema %d, want %d", raw.Schema, SchemaVersion)
	}
	seq, err := strconv.ParseUint(raw.Seq.String(), 10, 64)
	if err != nil {
		return Fields{}, fmt.Errorf("decode record: seq: %w", err)
	}
	f := Fields{
		Gateway: raw.Gateway, Device: raw.Device, Tag: raw.Tag, Seq: seq,
		Type: raw.Type, Quality: raw.Quality, ReadTime: raw.ReadTime,
	}
	if raw.SourceTime != nil {
		f.SourceTime = *raw.SourceTime
	}
	v := string(raw.Value)
	switch raw.Type {
	case TypeFloat:
		switch v {
		case `"` + NaN + `"`:
			f.Float = math.NaN()
		case `"` + PosInfinity + `"`:
			f.Float = math.Inf(1)
		case `"` + NegInfinity + `"`:
			f.Float = math.Inf(-1)
		default:
			f.Float, err = strconv.ParseFloat(v, 64)
		}
	case TypeInt:
		f.Int, err = strconv.ParseInt(v, 10, 64)
	case TypeUint:
		f.Uint, err = strconv.ParseUint(v, 10, 64)
	case TypeBool:
		f.Bool, err = strconv.ParseBool(v)
	case TypeString:
		err = json.Unmarshal(raw.Value, &f.String)
	default:
		err = fmt.Errorf("unknown type %q", raw.Type)
	}
	if err != nil {
		return Fields{}, fmt.Errorf("decode record: value of type %s: %w", raw.Type, err)
	}
	return f, nil
}
