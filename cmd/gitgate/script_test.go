package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as the gitgate command in scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"gitgate": func() { os.Exit(gitgateMain()) },
	})
}

// TestScripts runs the end-to-end scenarios in testdata/script: the real
// gitgate binary, the real git client, real HTTP on 127.0.0.1.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("..", "..", "testdata", "script"),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			for k, v := range map[string]string{
				"HOME":                env.WorkDir,
				"GITGATE_DATA_DIR":    filepath.Join(env.WorkDir, "data"),
				"GIT_CONFIG_NOSYSTEM": "1",
				"GIT_TERMINAL_PROMPT": "0",
				"GIT_AUTHOR_NAME":     "Test Author",
				"GIT_AUTHOR_EMAIL":    "author@example.com",
				"GIT_COMMITTER_NAME":  "Test Author",
				"GIT_COMMITTER_EMAIL": "author@example.com",
				"LC_ALL":              "C",
			} {
				env.Setenv(k, v)
			}
			env.Values["gates"] = gateSlots{}
			return os.WriteFile(filepath.Join(env.WorkDir, ".gitconfig"),
				[]byte("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"), 0o644)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"start-gate":   startGate,
			"stop-gate":    stopGate,
			"await-http":   awaitHTTP,
			"await-stdout": awaitStdout,
			"setenv-stdout": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: setenv-stdout NAME")
				}
				ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile("stdout")))
			},
		},
	})
}

// gateEnv lists the variables a started gate inherits from the script.
var gateEnv = []string{"PATH", "HOME", "GITGATE_DATA_DIR", "GIT_CONFIG_NOSYSTEM", "LC_ALL", "TMPDIR"}

// gateSlots holds the gates a script started, by name.
type gateSlots map[string]*runningGate

type runningGate struct {
	cmd  *exec.Cmd
	done chan error
}

// startGate runs "gitgate serve ARGS..." on free loopback ports, waits until
// it listens and sets $URL, $HTTP_HOSTPORT and $SSH_HOSTPORT. With -name N
// the variables are prefixed N_ (uppercased) and the log is $WORK/N.log
// (else gate.log); -data DIR gives it its own data dir. Gates are stopped
// when the script ends.
//
//	start-gate [-name N] [-data DIR] [serve flags...]
func startGate(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! start-gate")
	}
	name, dataDir := "", ts.Getenv("GITGATE_DATA_DIR")
	for len(args) >= 2 && (args[0] == "-name" || args[0] == "-data") {
		if args[0] == "-name" {
			name = args[1]
		} else {
			dataDir = args[1]
		}
		args = args[2:]
	}
	prefix, logName := "", "gate.log"
	if name != "" {
		prefix, logName = strings.ToUpper(name)+"_", name+".log"
	}
	argv := append([]string{"serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command("gitgate", argv...)
	cmd.Dir = ts.Getenv("WORK")
	for _, k := range gateEnv {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	cmd.Env = append(cmd.Env, "GITGATE_DATA_DIR="+dataDir)
	cmd.Path = lookPath(ts, "gitgate")
	logf, err := os.OpenFile(filepath.Join(ts.Getenv("WORK"), logName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	ts.Check(err)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	ts.Check(err)
	ts.Check(cmd.Start())
	g := &runningGate{cmd: cmd, done: make(chan error, 1)}
	ts.Value("gates").(gateSlots)[name] = g

	listening := regexp.MustCompile(`^(\w+): listening on (\S+)`)
	sc := bufio.NewScanner(stdout)
	url := ""
	for sc.Scan() {
		m := listening.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if m[1] == "http" {
			url = m[2]
			ts.Setenv(prefix+"URL", m[2])
			ts.Setenv(prefix+"HTTP_HOSTPORT", strings.TrimPrefix(m[2], "http://"))
		}
		if m[1] == "metrics" {
			ts.Setenv(prefix+"METRICS_URL", m[2])
		}
		if m[1] == "ssh" {
			ts.Setenv(prefix+"SSH_HOSTPORT", strings.TrimPrefix(m[2], "ssh://git@"))
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
		g.done <- cmd.Wait()
		logf.Close()
	}()
	if url == "" {
		ts.Fatalf("gate did not start; see %s", logName)
	}
	ts.Defer(func() {
		if g.cmd.ProcessState == nil {
			g.cmd.Process.Kill()
			<-g.done
		}
	})
}

// stopGate sends SIGTERM to a gate ("stop-gate [NAME]") and waits for it
// to exit cleanly.
func stopGate(ts *testscript.TestScript, neg bool, args []string) {
	name := ""
	if len(args) == 1 {
		name = args[0]
	}
	g := ts.Value("gates").(gateSlots)[name]
	if g == nil || g.cmd.ProcessState != nil {
		ts.Fatalf("no gate %q running", name)
	}
	ts.Check(g.cmd.Process.Signal(syscall.SIGTERM))
	err := <-g.done
	if (err != nil) != neg {
		ts.Fatalf("gate exit: %v", err)
	}
}

func lookPath(ts *testscript.TestScript, name string) string {
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	ts.Fatalf("%s not in PATH", name)
	return ""
}

// awaitHTTP polls "await-http STATUS URL" until a GET answers STATUS, for
// at most 10 s. It waits for the gate to see a change made by the CLI.
func awaitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: await-http STATUS URL")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if last, ok := awaitStatus(args[1], want); !ok {
		ts.Fatalf("GET %s: want %d, last answer %s", args[1], want, last)
	}
}

// awaitStdout runs "await-stdout REGEX PROGRAM ARGS..." again and again, for
// at most 10 s, until its stdout matches REGEX; the last run's output is
// left as stdout. It waits for the gates to act on a change.
func awaitStdout(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: await-stdout REGEX PROGRAM [ARGS...]")
	}
	re, err := regexp.Compile("(?m)" + args[0])
	ts.Check(err)
	var out []byte
	for i := 0; i < 200; i++ {
		cmd := exec.Command(lookPath(ts, args[1]), args[2:]...)
		cmd.Dir = ts.Getenv("WORK")
		for _, k := range append(gateEnv, "GITGATE_URL", "GITGATE_TOKEN") {
			cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
		}
		out, _ = cmd.Output()
		if re.Match(out) {
			ts.Stdout().Write(out)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("stdout of %s never matched %q; last:\n%s", strings.Join(args[1:], " "), args[0], out)
}
