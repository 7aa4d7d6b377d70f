// Command health evaluates the health of Kubernetes objects the way GitOps tools do:
//
//	health argocd-test DIR   run every <group>/<Kind>/health_test.yaml under DIR (Argo CD's
//	                         resource_customizations layout); one line per fixture; exit 1 on
//	                         any mismatch or when no test is found
//	health argocd FILE.lua   object JSON on stdin -> {"status","message"} from that health
//	                         check, run as argocd-cm runs it (standard libraries off)
//	health kstatus           object JSON on stdin -> {"status","message"} from kstatus
//	                         (sigs.k8s.io/cli-utils pkg/kstatus/status.Compute), what Flux's
//	                         health checks and `kubectl wait`-style tooling build on
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "argocd-test":
		if len(os.Args) != 3 {
			usage()
		}
		var failed bool
		failed, err = argocdTest(os.Args[2], os.Stdout)
		if err == nil && failed {
			os.Exit(1)
		}
	case "argocd":
		if len(os.Args) != 3 {
			usage()
		}
		err = argocdOne(os.Args[2], os.Stdin, os.Stdout)
	case "kstatus":
		if len(os.Args) != 2 {
			usage()
		}
		err = kstatusOne(os.Stdin, os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: health argocd-test DIR | health argocd FILE.lua <obj.json | health kstatus <obj.json")
	os.Exit(2)
}

func readObject(r io.Reader) (map[string]any, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("object on stdin is not a JSON object: %w", err)
	}
	return obj, nil
}

func argocdOne(script string, in io.Reader, out io.Writer) error {
	src, err := os.ReadFile(script)
	if err != nil {
		return err
	}
	obj, err := readObject(in)
	if err != nil {
		return err
	}
	hs, err := executeHealthLua(obj, string(src), false)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(hs)
}

// kstatusResult is the part of kstatus' Result a health check reports.
type kstatusResult struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func kstatusOne(in io.Reader, out io.Writer) error {
	obj, err := readObject(in)
	if err != nil {
		return err
	}
	// Through apimachinery's JSON decoding, as a client would hold it (integers as int64).
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return err
	}
	res, err := status.Compute(u)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(kstatusResult{Status: string(res.Status), Message: res.Message})
}

// healthTest is one entry of health_test.yaml (Argo CD's util/lua/health_test.go).
type healthTest struct {
	InputPath    string       `json:"inputPath"`
	HealthStatus HealthStatus `json:"healthStatus"`
}

func argocdTest(root string, out io.Writer) (bool, error) {
	var scripts []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "health.lua" {
			scripts = append(scripts, path)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	sort.Strings(scripts)
	passed, failed := 0, 0
	fail := func(format string, args ...any) {
		failed++
		fmt.Fprintf(out, "FAIL "+format+"\n", args...)
	}
	for _, script := range scripts {
		dir := filepath.Dir(script)
		name, _ := filepath.Rel(root, dir)
		src, err := os.ReadFile(script)
		if err != nil {
			return false, err
		}
		rawTests, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			fail("%s: %v", name, err)
			continue
		}
		var suite struct {
			Tests []healthTest `json:"tests"`
		}
		if err := yaml.UnmarshalStrict(rawTests, &suite); err != nil {
			fail("%s/health_test.yaml: %v", name, err)
			continue
		}
		if len(suite.Tests) == 0 {
			fail("%s/health_test.yaml: no tests", name)
			continue
		}
		for _, t := range suite.Tests {
			rawObj, err := os.ReadFile(filepath.Join(dir, t.InputPath))
			if err != nil {
				fail("%s %s: %v", name, t.InputPath, err)
				continue
			}
			obj := map[string]any{}
			if err := yaml.Unmarshal(rawObj, &obj); err != nil {
				fail("%s %s: %v", name, t.InputPath, err)
				continue
			}
			// Both ways Argo CD runs a script: argocd-cm (libraries off) and its own test
			// runner (libraries on).
			var results [2]*HealthStatus
			var runErr error
			for i, openLibs := range []bool{false, true} {
				results[i], runErr = executeHealthLua(obj, string(src), openLibs)
				if runErr != nil {
					break
				}
			}
			switch {
			case runErr != nil:
				fail("%s %s: %v", name, t.InputPath, runErr)
			case *results[0] != *results[1]:
				fail("%s %s: %+v with standard libraries off, %+v with them on", name, t.InputPath, *results[0], *results[1])
			case *results[0] != t.HealthStatus:
				fail("%s %s: got %s %q, want %s %q", name, t.InputPath,
					results[0].Status, results[0].Message, t.HealthStatus.Status, t.HealthStatus.Message)
			default:
				passed++
				fmt.Fprintf(out, "PASS %s %s: %s %q\n", name, t.InputPath, results[0].Status, results[0].Message)
			}
		}
	}
	if passed+failed == 0 {
		return false, fmt.Errorf("no health.lua under %s", root)
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
	return failed > 0, nil
}
