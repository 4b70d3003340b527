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
// keeping integers exact. It reads schema 2 and the schema 1 values of
// earlier builds (no epoch, a value in every record). Consumers in Go (and
// this project's tests) use it; consumers in other languages follow the
// schema in record.schema.json.
func Decode(value []byte) (Fields, error) {
	var raw struct {
		Schema     int             `json:"schema"`
		Gateway    string          `json:"gateway"`
		Epoch      *string         `json:"epoch"`
		Device     string          `json:"device"`
		Tag        string          `json:"tag"`
		Seq        json.Number     `json:"seq"`
		Type       string          `json:"type"`
		Value      json.RawMessage `json:"value"`
		Quality    string          `json:"quality"`
		Status     *string         `json:"status"`
		ReadTime   time.Time       `json:"read_time"`
		SourceTime *time.Time      `json:"source_time"`
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Fields{}, fmt.Errorf("decode record: %w", err)
	}
	switch {
	case raw.Schema != 1 && raw.Schema != SchemaVersion:
		return Fields{}, fmt.Errorf("decode record: schema %d, want 1 or %d", raw.Schema, SchemaVersion)
	case raw.Schema == 1 && raw.Epoch != nil:
		return Fields{}, fmt.Errorf("decode record: schema 1 has no epoch")
	case raw.Schema == 1 && raw.Value == nil:
		return Fields{}, fmt.Errorf("decode record: schema 1 without value")
	case raw.Schema >= 2 && raw.Epoch == nil:
		return Fields{}, fmt.Errorf("decode record: schema %d without epoch", raw.Schema)
	}
	seq, err := strconv.ParseUint(raw.Seq.String(), 10, 64)
	if err != nil {
		return Fields{}, fmt.Errorf("decode record: seq: %w", err)
	}
	f := Fields{
		Gateway: raw.Gateway, Device: raw.Device, Tag: raw.Tag, Seq: seq,
		Type: raw.Type, Quality: raw.Quality, ReadTime: raw.ReadTime,
	}
	if raw.Epoch != nil {
		f.Epoch = *raw.Epoch
	}
	if raw.SourceTime != nil {
		f.SourceTime = *raw.SourceTime
	}
	if raw.Status != nil {
		if *raw.Status == "" {
			return Fields{}, fmt.Errorf("decode record: empty status (it is left out when there is none)")
		}
		f.Status = *raw.Status
	}
	f.NoValue = raw.Value == nil
	if raw.Schema >= 2 && f.NoValue != (raw.Quality == QualityBad) {
		if f.NoValue {
			return Fields{}, fmt.Errorf("decode record: quality %q without a value (only a bad sample has none)", raw.Quality)
		}
		return Fields{}, fmt.Errorf("decode record: quality %q with a value (a bad sample has none)", raw.Quality)
	}
	switch {
	case f.NoValue:
		switch raw.Type {
		case TypeFloat, TypeInt, TypeUint, TypeBool, TypeString:
		default:
			err = fmt.Errorf("unknown type %q", raw.Type)
		}
	default:
		err = decodeValue(&f, raw.Type, raw.Value)
	}
	if err != nil {
		return Fields{}, fmt.Errorf("decode record: value of type %s: %w", raw.Type, err)
	}
	return f, nil
}

// decodeValue sets the value field of f selected by typ from the JSON text raw.
func decodeValue(f *Fields, typ string, raw json.RawMessage) (err error) {
	v := string(raw)
	switch typ {
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
		err = json.Unmarshal(raw, &f.String)
	default:
		err = fmt.Errorf("unknown type %q", typ)
	}
	return err
}
