// A Go host of the prover's C ABI (libprover_ffi): initialises a prover, proves a chunk task,
// verifies the proof, shows the error path, and runs two proofs from two goroutines on one handle.
//
// Build (see ffi/README.md), from the repository root after `cargo build --release -p ffi`:
//
//	CGO_CFLAGS="-I$PWD/ffi/include" \
//	CGO_LDFLAGS="-L$PWD/target/release -lprover_ffi -Wl,-rpath,$PWD/target/release" \
//	(cd ffi/examples/go && go build -o prover-host .)
//
// Run: prover-host PARAMS_DIR KEYS_DIR TASK_JSON_FILE
package main

/*
#cgo LDFLAGS: -lprover_ffi
#include <stdlib.h>
#include "prover.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Error is a failed call: the library's status code and its thread-local last error.
type Error struct {
	Code    int32
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("prover status %d: %s", e.Code, e.Message) }

// lastError must run on the OS thread that made the failed call: every wrapper below locks its
// goroutine to its thread for the call and the read (prover_last_error is thread-local).
func lastError() string { return C.GoString(C.prover_last_error()) }

func check(code C.int32_t) error {
	if code == C.PROVER_STATUS_OK {
		return nil
	}
	return &Error{Code: int32(code), Message: lastError()}
}

// Prover wraps a handle; safe for concurrent use (the library documents handles as shareable).
type Prover struct{ h *C.Prover }

func Version() string { return C.GoString(C.prover_version()) } // static: never freed

func Init(params, keys string) (*Prover, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cfg, _ := json.Marshal(map[string]string{"params_dir": params, "keys_dir": keys})
	c := C.CString(string(cfg))
	defer C.free(unsafe.Pointer(c))
	var h *C.Prover
	if err := check(C.prover_init(c, &h)); err != nil {
		return nil, err
	}
	return &Prover{h: h}, nil
}

func (p *Prover) Prove(task string) (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := C.CString(task)
	defer C.free(unsafe.Pointer(c))
	var out *C.char
	if err := check(C.prover_prove(p.h, c, &out)); err != nil {
		return "", err
	}
	defer C.prover_string_free(out) // library-owned until freed by the library
	return C.GoString(out), nil
}

// Verify reports whether the proof is valid; for an invalid proof, reason says why.
func (p *Prover) Verify(proof string) (valid bool, reason string, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := C.CString(proof)
	defer C.free(unsafe.Pointer(c))
	var v C.bool
	if err := check(C.prover_verify(p.h, c, &v)); err != nil {
		return false, "", err
	}
	if !bool(v) {
		return false, lastError(), nil
	}
	return true, "", nil
}

func (p *Prover) Free() {
	C.prover_free(p.h)
	p.h = nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: %s PARAMS_DIR KEYS_DIR TASK_JSON_FILE", os.Args[0])
	}
	taskBytes, err := os.ReadFile(os.Args[3])
	if err != nil {
		fail("%v", err)
	}
	task := string(taskBytes)
	fmt.Printf("version: %s\n", Version())

	// Error path: a config whose params_dir does not exist.
	if _, err := Init(os.Args[1]+"/does-not-exist", os.Args[2]); err == nil {
		fail("init with a missing params_dir succeeded")
	} else {
		fmt.Printf("init error (expected): %v\n", err)
	}

	p, err := Init(os.Args[1], os.Args[2])
	if err != nil {
		fail("init: %v", err)
	}
	defer p.Free()
	fmt.Println("init: ok")

	proof, err := p.Prove(task)
	if err != nil {
		fail("prove: %v", err)
	}
	fmt.Printf("prove: ok (%d bytes of proof JSON)\n", len(proof))
	valid, reason, err := p.Verify(proof)
	if err != nil || !valid {
		fail("verify: valid=%v reason=%q err=%v", valid, reason, err)
	}
	fmt.Println("verify: valid")

	// Error paths: malformed task JSON, unknown task type.
	_, err = p.Prove("{\"uuid\": ")
	var e *Error
	if err == nil {
		fail("malformed task accepted")
	}
	e = err.(*Error)
	if e.Code != C.PROVER_STATUS_MALFORMED_JSON || e.Message == "" {
		fail("malformed task: %v", err)
	}
	fmt.Printf("malformed task (expected): code=%d last_error=%q\n", e.Code, e.Message)
	_, err = p.Prove(strings.Replace(task, "\"task_type\": 1", "\"task_type\": 9", 1))
	if err == nil {
		fail("unknown task type accepted")
	}
	e = err.(*Error)
	if e.Code != C.PROVER_STATUS_UNKNOWN_TASK_TYPE || e.Message == "" {
		fail("unknown task type: %v", err)
	}
	fmt.Printf("unknown task type (expected): code=%d last_error=%q\n", e.Code, e.Message)

	// A rejected proof: tamper with the vk digest.
	var payload map[string]any
	if err := json.Unmarshal([]byte(proof), &payload); err != nil {
		fail("proof JSON: %v", err)
	}
	payload["vk_digest"] = "AAAA"
	tampered, _ := json.Marshal(payload)
	valid, reason, err = p.Verify(string(tampered))
	if err != nil || valid || reason == "" {
		fail("tampered proof: valid=%v reason=%q err=%v", valid, reason, err)
	}
	fmt.Printf("tampered proof (expected): valid=false reason=%q\n", reason)

	// Two proofs at once from two goroutines on the one handle.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			proof, err := p.Prove(task)
			if err != nil {
				errs[i] = err
				return
			}
			valid, reason, err := p.Verify(proof)
			if err != nil || !valid {
				errs[i] = fmt.Errorf("valid=%v reason=%q err=%v", valid, reason, err)
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			fail("goroutine %d: %v", i, err)
		}
	}
	fmt.Println("concurrent: 2 proofs from 2 goroutines, both valid")
	fmt.Println("go host: all checks passed")
}
