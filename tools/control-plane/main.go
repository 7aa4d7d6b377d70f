// Command control-plane runs a real, single-node Kubernetes control plane for
// the iam-operator's tests and local runs: etcd (embedded, in this process),
// kube-apiserver and kube-controller-manager (the same binary, re-executed as
// child processes: both upstream commands install process-global signal
// handlers and register process-global metrics/feature gates, so they cannot
// share one process).
//
// Usage:
//
//	control-plane --data-dir DIR [--kubeconfig-out PATH] [--verbose]
//
// When the API server answers /readyz with 200 and the controller manager has
// started (the "default" ServiceAccount exists), the admin kubeconfig is
// written and exactly one line "READY <kubeconfig path>" is printed to stdout.
// SIGTERM or SIGINT stops everything and the program exits 0.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

const (
	subAPIServer         = "kube-apiserver"
	subControllerManager = "kube-controller-manager"
)

func main() {
	// Multi-call binary: the children are this same executable.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case subAPIServer:
			cmd := apiserverapp.NewAPIServerCommand()
			cmd.SetArgs(os.Args[2:])
			os.Exit(cli.Run(cmd))
		case subControllerManager:
			cmd := kcmapp.NewControllerManagerCommand()
			cmd.SetArgs(os.Args[2:])
			os.Exit(cli.Run(cmd))
		}
	}
	os.Exit(runControlPlane())
}

type options struct {
	dataDir       string
	kubeconfigOut string
	verbose       bool
	readyTimeout  time.Duration
	etcdFsync     bool
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "control-plane: "+format+"\n", args...)
}

func runControlPlane() int {
	var o options
	fs := flag.NewFlagSet("control-plane", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for all state: certificates, etcd data, kubeconfigs (required; created if missing)")
	fs.StringVar(&o.kubeconfigOut, "kubeconfig-out", "", "where to write the admin kubeconfig (default DATA_DIR/kubeconfig)")
	fs.BoolVar(&o.verbose, "verbose", false, "pass through informational logs of etcd, kube-apiserver and kube-controller-manager")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up if the control plane is not ready within this time")
	fs.BoolVar(&o.etcdFsync, "etcd-fsync", false, "make etcd fsync its WAL (off by default: this control plane is for tests)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if o.dataDir == "" {
		fmt.Fprintln(os.Stderr, "control-plane: --data-dir is required")
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "control-plane: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var err error
	if o.dataDir, err = filepath.Abs(o.dataDir); err != nil {
		logf("%v", err)
		return 1
	}
	if o.kubeconfigOut == "" {
		o.kubeconfigOut = filepath.Join(o.dataDir, "kubeconfig")
	}
	if o.kubeconfigOut, err = filepath.Abs(o.kubeconfigOut); err != nil {
		logf("%v", err)
		return 1
	}

	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)

	cp := &controlPlane{opts: o}
	code := cp.run(sigCh)
	return code
}

type controlPlane struct {
	opts options
	etcd *embed.Etcd
	// etcdLogLevel is raised on shutdown: Close logs its closed listeners as errors.
	etcdLogLevel zap.AtomicLevel
	children     []*child
	childErr     chan error
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (cp *controlPlane) run(sigCh <-chan os.Signal) int {
	o := cp.opts
	cp.childErr = make(chan error, 4)
	defer cp.stop()

	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		logf("creating data dir: %v", err)
		return 1
	}
	p, err := ensurePKI(filepath.Join(o.dataDir, "pki"))
	if err != nil {
		logf("generating certificates: %v", err)
		return 1
	}

	ports, err := freePorts(3)
	if err != nil {
		logf("picking free ports: %v", err)
		return 1
	}
	etcdClientPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2]

	if err := cp.startEtcd(etcdClientPort, etcdPeerPort); err != nil {
		logf("starting etcd: %v", err)
		return 1
	}

	apiURL := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kcmKubeconfig := filepath.Join(o.dataDir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, apiURL, p.caPEM, p.kcmCertPEM, p.kcmKeyPEM, "kube-controller-manager"); err != nil {
		logf("writing controller-manager kubeconfig: %v", err)
		return 1
	}

	verbosity := "0"
	apiArgs := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + p.file("apiserver.crt"),
		"--tls-private-key-file=" + p.file("apiserver.key"),
		"--client-ca-file=" + p.file("ca.crt"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.file("sa.pub"),
		"--service-account-signing-key-file=" + p.file("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// The only IP is loopback, which is not a valid Endpoints address.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + filepath.Join(o.dataDir, "apiserver-certs"),
		"--v=" + verbosity,
	}
	if err := cp.startChild(subAPIServer, apiArgs); err != nil {
		logf("starting kube-apiserver: %v", err)
		return 1
	}

	client, err := p.adminHTTPClient()
	if err != nil {
		logf("%v", err)
		return 1
	}
	deadline := time.Now().Add(o.readyTimeout)
	if code, done := cp.waitFor(sigCh, deadline, "kube-apiserver /readyz", func() bool {
		return get(client, apiURL+"/readyz") == http.StatusOK
	}); done {
		return code
	}

	kcmArgs := []string{
		"--kubeconfig=" + kcmKubeconfig,
		"--authentication-kubeconfig=" + kcmKubeconfig,
		"--authorization-kubeconfig=" + kcmKubeconfig,
		"--bind-address=127.0.0.1",
		// No HTTPS endpoint: it would need a fixed port (default 10257).
		"--secure-port=0",
		"--leader-elect=false",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--root-ca-file=" + p.file("ca.crt"),
		"--service-account-private-key-file=" + p.file("sa.key"),
		"--cluster-signing-cert-file=" + p.file("ca.crt"),
		"--cluster-signing-key-file=" + p.file("ca.key"),
		// Keep it off the host's /usr/libexec (it creates the directory).
		"--flex-volume-plugin-dir=" + filepath.Join(o.dataDir, "flexvolume"),
		"--profiling=false",
		"--v=" + verbosity,
	}
	if err := cp.startChild(subControllerManager, kcmArgs); err != nil {
		logf("starting kube-controller-manager: %v", err)
		return 1
	}
	// The serviceaccount controller creates the "default" ServiceAccount:
	// seeing it means the controller manager runs its controllers.
	if code, done := cp.waitFor(sigCh, deadline, "kube-controller-manager (default ServiceAccount)", func() bool {
		return get(client, apiURL+"/api/v1/namespaces/default/serviceaccounts/default") == http.StatusOK
	}); done {
		return code
	}

	if err := writeKubeconfig(o.kubeconfigOut, apiURL, p.caPEM, p.adminCertPEM, p.adminKeyPEM, "admin"); err != nil {
		logf("writing admin kubeconfig: %v", err)
		return 1
	}
	fmt.Fprintf(os.Stdout, "READY %s\n", o.kubeconfigOut)
	if f, ok := any(os.Stdout).(interface{ Sync() error }); ok {
		_ = f.Sync()
	}

	select {
	case s := <-sigCh:
		logf("received %v, shutting down", s)
		return 0
	case err := <-cp.childErr:
		logf("%v; shutting down", err)
		return 1
	case err := <-cp.etcd.Err():
		logf("etcd failed: %v; shutting down", err)
		return 1
	}
}

// waitFor polls cond until it holds. done is true when the caller must return code.
func (cp *controlPlane) waitFor(sigCh <-chan os.Signal, deadline time.Time, what string, cond func() bool) (code int, done bool) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return 0, false
		}
		if time.Now().After(deadline) {
			logf("timed out waiting for %s", what)
			return 1, true
		}
		select {
		case s := <-sigCh:
			logf("received %v before ready, shutting down", s)
			return 0, true
		case err := <-cp.childErr:
			logf("%v", err)
			return 1, true
		case err := <-cp.etcd.Err():
			logf("etcd failed: %v", err)
			return 1, true
		case <-t.C:
		}
	}
}

func get(c *http.Client, u string) int {
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (cp *controlPlane) startEtcd(clientPort, peerPort int) error {
	cfg := embed.NewConfig()
	cfg.Name = "control-plane"
	cfg.Dir = filepath.Join(cp.opts.dataDir, "etcd")
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = !cp.opts.etcdFsync
	cfg.QuotaBackendBytes = 2 << 30
	level := zapcore.ErrorLevel
	if cp.opts.verbose {
		level = zapcore.InfoLevel
	}
	zcfg := zap.NewProductionConfig()
	cp.etcdLogLevel = zap.NewAtomicLevelAt(level)
	zcfg.Level = cp.etcdLogLevel
	zcfg.OutputPaths = []string{"stderr"}
	zcfg.ErrorOutputPaths = []string{"stderr"}
	zcfg.Sampling = nil
	lg, err := zcfg.Build(zap.Fields(zap.String("component", "etcd")))
	if err != nil {
		return err
	}
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	cp.etcd = e
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return err
	case <-time.After(60 * time.Second):
		return errors.New("etcd did not become ready within 60s")
	}
}

var (
	klogInfoLine = regexp.MustCompile(`^I\d{4} `)
	// Benign warnings every start or stop prints; shown only with --verbose.
	benignLine = regexp.MustCompile(`Skipping API .* because it has no resources` +
		`|grpc: addrConn.createTransport failed to connect to .*(operation was canceled|use of closed network connection)` +
		`|The manifest file is empty, ignoring` +
		`|Found stale data, removed previous endpoints on kubernetes service` +
		`|namespaces \\"kube-system\\" not found` +
		`|Flexvolume plugin directory at .* does not exist. Recreating`)
)

func (cp *controlPlane) startChild(name string, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Dir = cp.opts.dataDir
	cmd.Stdin = nil
	cmd.Stdout = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a terminal's Ctrl-C reaches only us, and we stop
		// the children in order.
		Setpgid: true,
		// Should we die without cleaning up, the kernel kills the children.
		Pdeathsig: syscall.SIGKILL,
	}
	var pipeDone chan struct{}
	if cp.opts.verbose {
		cmd.Stderr = os.Stderr
	} else {
		r, err := cmd.StderrPipe()
		if err != nil {
			return err
		}
		pipeDone = make(chan struct{})
		go func() {
			defer close(pipeDone)
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
			for sc.Scan() {
				line := sc.Bytes()
				if klogInfoLine.Match(line) || benignLine.Match(line) {
					continue
				}
				fmt.Fprintf(os.Stderr, "[%s] %s\n", name, line)
			}
			_, _ = io.Copy(io.Discard, r)
		}()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	cp.children = append(cp.children, c)
	go func() {
		if pipeDone != nil {
			<-pipeDone
		}
		c.err = cmd.Wait()
		close(c.done)
		select {
		case cp.childErr <- fmt.Errorf("%s exited unexpectedly: %v", name, c.err):
		default:
		}
	}()
	return nil
}

// stop terminates the children (newest first), then etcd. Idempotent.
func (cp *controlPlane) stop() {
	var wg sync.WaitGroup
	for i := len(cp.children) - 1; i >= 0; i-- {
		c := cp.children[i]
		select {
		case <-c.done:
			continue
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.done:
			case <-time.After(20 * time.Second):
				logf("%s did not stop in 20s, killing it", c.name)
				_ = c.cmd.Process.Kill()
				<-c.done
			}
		}()
	}
	wg.Wait()
	cp.children = nil
	if cp.etcd != nil {
		if !cp.opts.verbose {
			cp.etcdLogLevel.SetLevel(zapcore.FatalLevel)
		}
		cp.etcd.Close()
		cp.etcd = nil
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (p *pki) adminHTTPClient() (*http.Client, error) {
	cert, err := tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.caPEM) {
		return nil, errors.New("bad CA certificate")
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		},
	}, nil
}
