package main

// The Lua VM set up the way Argo CD sets it up for resource health checks, so that a
// health.lua that passes here behaves the same inside Argo CD.
//
// Mirrors argoproj/argo-cd at commit 37ee0097cf (master, 2026-08-22; v3.6.x is current),
// util/lua/lua.go (VM.runLuaWithResourceActionParameters, ExecuteHealthLua, decodeValue,
// isValidHealthStatusCode), util/lua/oslib_safe.go (the safe os module) and
// util/lua/health_test.go (how health_test.yaml is evaluated). Argo CD itself cannot be a
// dependency here: v3.6.x requires Go >= 1.27 and v3.5.x needs a gitops-engine version
// the module proxy does not serve (see docs/gitops.md).
//
// What is mirrored:
//   - gopher-lua v1.1.2 (Argo CD's go.mod pins the same version);
//   - lua.NewState with SkipOpenLibs = !useOpenLibs. argocd-cm scripts run with
//     useOpenLibs=false unless resource.customizations.useOpenLibs.<group>_<kind> is set;
//     Argo CD's own health_test.yaml runner uses true. argocd-test runs every fixture both
//     ways and requires the same result, so the scripts never rely on string/math/os;
//   - then, whatever useOpenLibs says, the package, base and table libraries are opened,
//     and a "safe os" module with only time and date. Argo CD registers that module
//     under the *table* library's name (RegisterModule(TabLibName, ...)) and preloads it
//     as "os" for require("os"); both quirks are kept so a script sees what it sees there;
//   - a 1 s context deadline on the state;
//   - obj: the object as a Lua table built the way decodeValue builds it (maps become
//     hash tables, lists array tables, numbers LNumber, JSON null nil);
//   - the returned value: a table is encoded to JSON (as layeh.com/gopher-json does) and
//     unmarshalled into {status, message}; a JSON type error (e.g. an empty table,
//     encoded as []) gives an empty status; a status outside Unknown/Progressing/Suspended/Healthy/Degraded/Missing
//     becomes Unknown with "Lua returned an invalid health status"; nil gives an empty
//     status; anything else is an error.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// HealthStatus is Argo CD's health.HealthStatus (gitops-engine pkg/health).
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

const invalidHealthStatus = "Lua returned an invalid health status"

var validHealthStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// executeHealthLua runs script with the global obj set to object and returns the health
// status the way Argo CD's VM.ExecuteHealthLua does.
func executeHealthLua(object map[string]any, script string, useOpenLibs bool) (*HealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("opening Lua library %q: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)

	// Argo CD sets an (empty, for health checks) actionParams table too.
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, object))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	if err != nil {
		return nil, err
	}

	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return &HealthStatus{}, nil
	case lua.LTTable:
		encoded, err := fromLua(ret, 0)
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(encoded)
		if err != nil {
			return nil, err
		}
		hs := &HealthStatus{}
		if err := json.Unmarshal(raw, hs); err != nil {
			// Argo CD turns any type error (an empty table encodes as [], a status that
			// is not a string...) into an empty status.
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return &HealthStatus{}, nil
			}
			return nil, err
		}
		if !validHealthStatus[hs.Status] {
			return &HealthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
		}
		return hs, nil
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
}

// toLua builds the Lua value of a JSON value (Argo CD's decodeValue).
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	default:
		return lua.LNil
	}
}

// fromLua turns a Lua value into a JSON-encodable value with the rules of
// layeh.com/gopher-json's Encode (the version Argo CD pins, 97fed8db8427): a table with
// no keys is [], one with keys 1..n an array, one with only string keys an object; mixed
// or sparse keys, other key types and functions are errors, and so is a table nested in
// itself (gopher-json tracks visited tables; here, nesting deeper than 1000 levels).
func fromLua(value lua.LValue, depth int) (any, error) {
	if depth > 1000 {
		return nil, errors.New("nested table depth exceeded")
	}
	switch v := value.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		f := float64(v)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("cannot encode number %v", f)
		}
		return f, nil
	case lua.LString:
		return string(v), nil
	case *lua.LTable:
		var (
			arr     []any
			obj     map[string]any
			keyErr  error
			nextIdx = 1
		)
		v.ForEach(func(k, item lua.LValue) {
			if keyErr != nil {
				return
			}
			enc, err := fromLua(item, depth+1)
			if err != nil {
				keyErr = err
				return
			}
			switch key := k.(type) {
			case lua.LNumber:
				if obj != nil || float64(key) != float64(nextIdx) {
					keyErr = errors.New("cannot encode mixed or invalid key types")
					return
				}
				arr = append(arr, enc)
				nextIdx++
			case lua.LString:
				if arr != nil {
					keyErr = errors.New("cannot encode mixed or invalid key types")
					return
				}
				if obj == nil {
					obj = map[string]any{}
				}
				obj[string(key)] = enc
			default:
				keyErr = errors.New("cannot encode mixed or invalid key types")
			}
		})
		if keyErr != nil {
			return nil, keyErr
		}
		if obj != nil {
			return obj, nil
		}
		if arr == nil {
			arr = []any{}
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("cannot encode %s to JSON", value.Type().String())
	}
}

// The safe os module: os.time and os.date only (no exit, execute, getenv, files).
var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	// Registered under the table library's name, as Argo CD does (see the header).
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

// osTime: os.time() is now; os.time{year=,month=,day=[,hour=12,min=0,sec=0]} that local time.
func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	when := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(when.Unix()))
	return 1
}

// osDate: os.date([format [, time]]); a leading "!" means UTC, "*t" a table.
func osDate(l *lua.LState) int {
	t := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t = t.UTC()
			format = strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			r := l.NewTable()
			for k, v := range map[string]int{
				"year": t.Year(), "month": int(t.Month()), "day": t.Day(), "hour": t.Hour(),
				"min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0,
			} {
				r.RawSetString(k, lua.LNumber(v))
			}
			r.RawSetString("isdst", lua.LFalse)
			l.Push(r)
			return 1
		}
	}
	l.Push(lua.LString(strftime(t, format)))
	return 1
}

var strftimeLayouts = map[byte]string{
	'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST",
	'd': "02", 'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM",
	'P': "pm", 'S': "05", 'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006",
	'z': "-0700", 'Z': "MST",
}

func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i == len(format)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		switch f := format[i]; {
		case f == '%':
			b.WriteByte('%')
		case f == 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case strftimeLayouts[f] != "":
			b.WriteString(t.Format(strftimeLayouts[f]))
		default:
			b.WriteByte('%')
			b.WriteByte(f)
		}
	}
	return b.String()
}
