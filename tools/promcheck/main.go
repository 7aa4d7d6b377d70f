// Command promcheck validates Prometheus rule files as `promtool check rules` does
// (rulefmt.Parse, which also parses every expression and annotation template) and
// parses every PromQL expression of Grafana dashboards, then prints the metric names
// each rule and each panel selects, so a test can compare them with what the operator
// exports.
//
// Usage:
//
//	promcheck [-rules FILE]... [-dashboard FILE]...
//
// Output, one line per selected metric name, tab-separated:
//
//	rule	<group>/<alert or record name>	<metric>
//	panel	<panel title>/<refId>	<metric>
//	variable	<variable name>	<metric>
//
// Errors go to stderr and make the exit status 1. A selector without a metric name
// (e.g. `{job="x"}`) is an error: it cannot be checked against an exporter.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

// promtool's own parser options and name validation (UTF-8, its default).
var promql = parser.NewParser(parser.Options{})

func main() {
	var rules, dashboards files
	flag.Var(&rules, "rules", "Prometheus rule file (rule-group format); repeatable")
	flag.Var(&dashboards, "dashboard", "Grafana dashboard JSON; repeatable")
	flag.Parse()
	if len(rules)+len(dashboards) == 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	failed := false
	report := func(err error) {
		failed = true
		fmt.Fprintln(os.Stderr, "promcheck:", err)
	}
	for _, f := range rules {
		for _, err := range checkRules(f, os.Stdout) {
			report(err)
		}
	}
	for _, f := range dashboards {
		for _, err := range checkDashboard(f, os.Stdout) {
			report(err)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// metricNames returns the metric names the expression's selectors select, sorted and
// deduplicated, or an error for a selector that names none.
func metricNames(expr string) ([]string, error) {
	parsed, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var errs []error
	for _, matchers := range parser.ExtractSelectors(parsed) {
		name := ""
		for _, m := range matchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("selector %v names no metric", matchers))
			continue
		}
		seen[name] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, errors.Join(errs...)
}

func checkRules(file string, out io.Writer) []error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, logger)
	if len(errs) > 0 {
		return errs
	}
	if len(groups.Groups) == 0 {
		return []error{fmt.Errorf("%s: no rule groups", file)}
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			names, err := metricNames(r.Expr)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s/%s: %w", file, g.Name, name, err))
			}
			for _, n := range names {
				fmt.Fprintf(out, "rule\t%s/%s\t%s\n", g.Name, name, n)
			}
		}
	}
	return errs
}

// Grafana's interval variables become a duration; any other variable a regexp that
// matches everything (dashboards use them inside label matchers).
var (
	intervalVar = regexp.MustCompile(`\$__(rate_)?interval\b|\$\{__(rate_)?interval\}|\$__range\b|\$\{__range\}`)
	otherVar    = regexp.MustCompile(`\$\{[A-Za-z0-9_]+(:[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]`)
	labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)
)

func substitute(expr string) string {
	return otherVar.ReplaceAllString(intervalVar.ReplaceAllString(expr, "5m"), ".*")
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func checkDashboard(file string, out io.Writer) []error {
	data, err := os.ReadFile(file)
	if err != nil {
		return []error{err}
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return []error{fmt.Errorf("%s: %w", file, err)}
	}
	var errs []error
	exprs := 0
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					continue
				}
				exprs++
				where := p.Title + "/" + t.RefID
				names, err := metricNames(substitute(t.Expr))
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: panel %s: %q: %w", file, where, t.Expr, err))
				}
				for _, n := range names {
					fmt.Fprintf(out, "panel\t%s\t%s\n", where, n)
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// The query is a string, or an object with a "query" string (newer Grafana).
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				errs = append(errs, fmt.Errorf("%s: variable %s: unreadable query", file, v.Name))
				continue
			}
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: variable %s: only label_values(<selector>, <label>) is understood, got %q", file, v.Name, q))
			continue
		}
		names, err := metricNames(substitute(m[1]))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: variable %s: %w", file, v.Name, err))
		}
		for _, n := range names {
			fmt.Fprintf(out, "variable\t%s\t%s\n", v.Name, n)
		}
	}
	if exprs == 0 {
		errs = append(errs, fmt.Errorf("%s: no panel has a PromQL expression", file))
	}
	return errs
}
