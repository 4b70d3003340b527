package monitoring

import (
	"slices"
	"testing"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
)

// droveReasons lists, per drop counter, the reason label values a scrape
// test drives from outside and the test that does.
var droveReasons = map[string]map[string]string{
	"iot_buffer_dropped_records_total": {
		string(buffer.ReasonMaxBytes): "TestScrapedMetricsMove/buffer full by size",
		string(buffer.ReasonMaxAge):   "TestScrapedMetricsMove/buffer full by age",
		string(buffer.ReasonDiskFull): "TestScrapedDiskFull",
		string(buffer.ReasonCorrupt):  "TestScrapedDamageMoves/frames damaged in place",
	},
	"iot_ingest_samples_dropped_total": {
		"pending_full":           "TestScrapedDiskFull",
		"shutdown_commit_failed": "TestScrapedDiskFull",
	},
}

// undrivable lists the reasons no scrape test can drive, with why (see
// TestScrapedMetricsMove's comment).
var undrivable = map[string]map[string]string{
	"iot_ingest_samples_dropped_total": {
		"stopped": "counted while the agent shuts down, after its last scrape, and not kept in the buffer file (agent/ingest TestEmitAfterStopIsCounted drives it)",
	},
}

// TestEveryDropReasonDriven holds droveReasons and undrivable to the
// reasons the buffer and ingest report, so that a new reason needs a
// scenario or a reason why it has none.
func TestEveryDropReasonDriven(t *testing.T) {
	all := map[string][]string{"iot_ingest_samples_dropped_total": ingest.DropReasons}
	for _, r := range buffer.Reasons {
		all["iot_buffer_dropped_records_total"] = append(all["iot_buffer_dropped_records_total"], string(r))
	}
	for metric, reasons := range all {
		for _, r := range reasons {
			_, drove := droveReasons[metric][r]
			_, cannot := undrivable[metric][r]
			if drove == cannot {
				t.Errorf("%s{reason=%q}: driven %v, listed as undrivable %v: want exactly one", metric, r, drove, cannot)
			}
		}
	}
	for _, listed := range []map[string]map[string]string{droveReasons, undrivable} {
		for metric, reasons := range listed {
			for r := range reasons {
				if !slices.Contains(all[metric], r) {
					t.Errorf("%s{reason=%q} is listed and not reported by the buffer or ingest", metric, r)
				}
			}
		}
	}
}
