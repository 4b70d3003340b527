package opcua

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/drivers"
)

// Quality maps an OPC UA status code to a sample quality by its severity
// bits (Good 00, Uncertain 01, Bad 10 and 11) and returns the code's name,
// "Good" for a plain good status and the hexadecimal code for one the table
// does not know.
func Quality(sc ua.StatusCode) (drivers.Quality, string) {
	q := drivers.QualityGood
	switch uint32(sc) >> 30 {
	case 1:
		q = drivers.QualityUncertain
	case 2, 3:
		q = drivers.QualityBad
	}
	return q, StatusName(sc)
}

// StatusName returns the symbolic name of a status code, such as
// "BadCommunicationError", or "0x80AB0000" for a code it does not know.
func StatusName(sc ua.StatusCode) string {
	if sc == ua.StatusOK {
		return "Good"
	}
	if d, ok := ua.StatusCodes[sc]; ok && d.Name != "" {
		return specName(d.Name)
	}
	// The low 16 bits carry info bits (limits, overflow) on top of the code.
	if d, ok := ua.StatusCodes[sc&0xFFFF0000]; ok && d.Name != "" {
		return specName(d.Name)
	}
	return fmt.Sprintf("0x%08X", uint32(sc))
}

// specNames turns gopcua's Go names back into the specification's:
// StatusBadNodeIDUnknown is BadNodeIdUnknown.
var specNames = strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")

func specName(n string) string {
	return specNames.Replace(strings.TrimPrefix(n, "Status"))
}

// ErrArray is returned by Convert for a value that is an array or matrix:
// a tag reads one scalar.
type ErrArray struct {
	Type   ua.TypeID
	Length int32
}

func (e *ErrArray) Error() string {
	return fmt.Sprintf("the value is an array of %d %s; a tag reads one scalar (name an element's own node, if the server has one)", e.Length, typeName(e.Type))
}

// Convert maps an OPC UA scalar to a sample value with nothing lost:
//
//   - Boolean → bool
//   - SByte, Int16, Int32, Int64 → int; Byte, UInt16, UInt32, UInt64 →
//     uint (64-bit values stay exact: the record writes integers digit for
//     digit)
//   - Float → float, at float32 precision: the shortest decimal that reads
//     back as the same float32 (0.1, not 0.10000000149011612)
//   - Double → float
//   - String, XmlElement → string
//   - DateTime → string, RFC 3339 UTC with nanoseconds
//   - Guid → string (its canonical form); ByteString → string, standard
//     base64
//   - NodeId, ExpandedNodeId → string in the ns=…; notation
//   - QualifiedName → string "ns:name" ("name" in namespace 0)
//   - LocalizedText → string, its text (the locale is dropped)
//   - StatusCode → uint, the 32-bit code
//
// An empty variant (Null), an array, and the structured types
// (ExtensionObject, DataValue, Variant, DiagnosticInfo) are errors.
func Convert(v *ua.Variant) (drivers.Value, error) {
	if v == nil || v.Type() == ua.TypeIDNull {
		return drivers.Value{}, fmt.Errorf("the value is empty (Null)")
	}
	if v.ArrayLength() > 0 || len(v.ArrayDimensions()) > 0 {
		return drivers.Value{}, &ErrArray{Type: v.Type(), Length: v.ArrayLength()}
	}
	switch x := v.Value().(type) {
	case bool:
		return drivers.Bool(x), nil
	case int8:
		return drivers.Int(int64(x)), nil
	case int16:
		return drivers.Int(int64(x)), nil
	case int32:
		return drivers.Int(int64(x)), nil
	case int64:
		return drivers.Int(x), nil
	case uint8:
		return drivers.Uint(uint64(x)), nil
	case uint16:
		return drivers.Uint(uint64(x)), nil
	case uint32:
		return drivers.Uint(uint64(x)), nil
	case uint64:
		return drivers.Uint(x), nil
	case float32:
		return drivers.Float32(x), nil
	case float64:
		return drivers.Float(x), nil
	case string:
		return drivers.String(x), nil
	case ua.XMLElement:
		return drivers.String(string(x)), nil
	case time.Time:
		return drivers.String(x.UTC().Format(time.RFC3339Nano)), nil
	case *ua.GUID:
		return drivers.String(x.String()), nil
	case []byte:
		return drivers.String(base64.StdEncoding.EncodeToString(x)), nil
	case *ua.NodeID:
		return drivers.String(x.String()), nil
	case *ua.ExpandedNodeID:
		return drivers.String(x.String()), nil
	case *ua.QualifiedName:
		if x.NamespaceIndex == 0 {
			return drivers.String(x.Name), nil
		}
		return drivers.String(strconv.Itoa(int(x.NamespaceIndex)) + ":" + x.Name), nil
	case *ua.LocalizedText:
		return drivers.String(x.Text), nil
	case ua.StatusCode:
		return drivers.Uint(uint64(x)), nil
	}
	return drivers.Value{}, fmt.Errorf("values of type %s are not supported (structures and diagnostics are not scalars)", typeName(v.Type()))
}

// typeName is the specification's name of a built-in type: Double, not
// gopcua's TypeIDDouble.
func typeName(t ua.TypeID) string {
	switch t {
	case ua.TypeIDGUID:
		return "Guid"
	case ua.TypeIDXMLElement:
		return "XmlElement"
	case ua.TypeIDUint16, ua.TypeIDUint32, ua.TypeIDUint64:
		return "UInt" + strings.TrimPrefix(t.String(), "TypeIDUint")
	}
	return specNames.Replace(strings.TrimPrefix(t.String(), "TypeID"))
}
