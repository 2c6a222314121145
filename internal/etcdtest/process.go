package etcdtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// MemberEnv names the environment variable that makes a test binary an
// etcd member of StartProcesses.
const MemberEnv = "PIGEON_ETCDTEST_MEMBER"

// MemberMain runs this process as an etcd member when MemberEnv is set
// and returns its exit code, else returns -1 at once. Call it first in
// TestMain:
//
//	if code := etcdtest.MemberMain(); code >= 0 {
//		os.Exit(code)
//	}
//
// The member prints "ready" when it serves and stops (gracefully) when its
// stdin closes.
func MemberMain() int {
	raw := os.Getenv(MemberEnv)
	if raw == "" {
		return -1
	}
	var mc memberConfig
	if err := json.Unmarshal([]byte(raw), &mc); err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest member:", err)
		return 2
	}
	cfg, err := mc.embed()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest member:", err)
		return 2
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest member:", err)
		if errors.Is(bindError(err), errAddrInUse) {
			return exitAddrInUse
		}
		return 2
	}
	defer func() {
		e.Close()
		<-e.Server.StopNotify()
	}()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcdtest member:", err)
		return 2
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// exitAddrInUse is a member's exit code when a port it was given was taken.
const exitAddrInUse = 3

// process is a child-process member.
type process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan struct{}
	exited chan error // receives the exit once, then is closed
	done   chan struct{}
}

func startProcess(exe string, mc memberConfig) (*process, error) {
	raw, err := json.Marshal(mc)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), MemberEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, stdin: stdin, ready: make(chan struct{}), exited: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(p.ready)
			}
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
			err = errors.New("exited")
		case errors.As(err, &exit) && exit.ExitCode() == exitAddrInUse:
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		p.exited <- err
		close(p.exited)
	}()
	return p, nil
}

// kill is kill -9; it returns when the process is gone.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop closes the member's stdin (a graceful stop) and waits; after 30 s
// it kills it.
func (p *process) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}
