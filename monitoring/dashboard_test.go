package monitoring

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboard is the part of Grafana's dashboard JSON this test reads.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource *dsRef     `json:"datasource"`
	GridPos    *gridPos   `json:"gridPos"`
	Panels     []panel    `json:"panels"` // a collapsed row's panels
	Targets    []struct { // queries
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *dsRef `json:"datasource"`
	} `json:"targets"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return &d
}

// allPanels flattens rows: every panel, each with the title of its row.
func allPanels(d *dashboard) (panels []panel, rowOf map[int]string) {
	rowOf = map[int]string{}
	row := ""
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				row = p.Title
			} else {
				rowOf[p.ID] = row
			}
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return panels, rowOf
}

// TestDashboardPanels checks the ops manual's four panel groups and the
// queries of every panel.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	panels, rowOf := allPanels(d)
	ids := map[int]string{}
	perRow := map[string][]string{}
	for _, p := range panels {
		if p.ID == 0 {
			t.Errorf("panel %q has no id", p.Title)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		perRow[rowOf[p.ID]] = append(perRow[rowOf[p.ID]], p.Title)
		if p.Type == "alertlist" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource should be the ${datasource} variable, got %+v", p.Title, p.Datasource)
		}
	}
	// The ops manual: 系统概览 (message rate, error rate, latency), 资源使用
	// (CPU, memory, network), 业务指标 (devices, data generation), 告警状态.
	for row, want := range map[string][]string{
		"系统概览": {"消息发送速率", "错误率", "发送延迟"},
		"资源使用": {"CPU", "内存", "Goroutines", "网络"},
		"业务指标": {"设备数据生成", "缓冲区深度"},
		"告警状态": {"当前告警", "告警历史"},
	} {
		titles, ok := perRow[row]
		if !ok {
			t.Errorf("no row %q", row)
			continue
		}
		for _, w := range want {
			found := false
			for _, title := range titles {
				found = found || strings.Contains(title, w)
			}
			if !found {
				t.Errorf("row %q has no %q panel (it has %q)", row, w, titles)
			}
		}
	}
}

var labelValuesRe = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

// TestDashboardUsesExportedMetrics fails when a panel or a variable names
// a metric or label the agent does not export.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	d := loadDashboard(t)
	known := exported(t)
	panels, _ := allPanels(d)
	n := 0
	for _, p := range panels {
		for _, tg := range p.Targets {
			n++
			for _, problem := range checkExpr(tg.Expr, known) {
				t.Errorf("panel %q, query %s: %s", p.Title, tg.RefID, problem)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d queries found: is the dashboard read right?", n)
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesRe.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: want label_values(metric, label), got %q", v.Name, v.Definition)
			continue
		}
		if f, ok := known[m[1]]; !ok || !f.labels[m[2]] {
			t.Errorf("variable %s: %s{%s} is not exported", v.Name, m[1], m[2])
		}
	}
}
