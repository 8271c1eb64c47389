/*
 * A small C host of libprover_ffi, for checking the library's own memory handling under valgrind
 * (the Go runtime makes valgrind too noisy to judge the library through the Go host).
 *
 * It drives every export through its lifecycle and error paths without proving (a proof under
 * valgrind takes many minutes); ffi/tests/c_host.rs builds it with gcc and runs it, under
 * `valgrind --leak-check=full --error-exitcode=99` when valgrind is installed.
 *
 * Build:  gcc -Wall -Wextra -Werror -I ffi/include ffi/examples/c/host.c \
 *           -L target/release -lprover_ffi -Wl,-rpath,$PWD/target/release -o prover-c-host
 * Run:    prover-c-host PARAMS_DIR KEYS_DIR TASK_JSON_FILE
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prover.h"

static int failures = 0;

static void expect(const char *what, int32_t code, int32_t expected) {
    const char *msg = prover_last_error();
    if (code != expected || (expected != PROVER_STATUS_OK && (msg == NULL || msg[0] == '\0'))) {
        printf("FAIL %s: code %d, expected %d, last error \"%s\"\n", what, code, expected,
               msg ? msg : "(null)");
        failures++;
    } else {
        printf("ok   %s: code %d%s%s\n", what, code, expected != PROVER_STATUS_OK ? ": " : "",
               expected != PROVER_STATUS_OK ? msg : "");
    }
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PARAMS_DIR KEYS_DIR TASK_JSON_FILE\n", argv[0]);
        return 2;
    }
    char *task = read_file(argv[3]);
    if (!task) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 2;
    }
    printf("version %s\n", prover_version());

    char config[4096];
    snprintf(config, sizeof config, "{\"params_dir\": \"%s\", \"keys_dir\": \"%s\"}", argv[1],
             argv[2]);
    Prover *p = NULL;
    expect("init NULL config", prover_init(NULL, &p), PROVER_STATUS_NULL_POINTER);
    expect("init NULL out", prover_init(config, NULL), PROVER_STATUS_NULL_POINTER);
    expect("init invalid UTF-8", prover_init("{\"\xff\": 1}", &p), PROVER_STATUS_INVALID_UTF8);
    expect("init malformed JSON", prover_init("{", &p), PROVER_STATUS_MALFORMED_JSON);
    expect("init missing params_dir",
           prover_init("{\"params_dir\": \"/nonexistent/params\", \"keys_dir\": \"/tmp\"}", &p),
           PROVER_STATUS_INVALID_CONFIG);
    expect("init", prover_init(config, &p), PROVER_STATUS_OK);

    char *proof = NULL;
    bool valid = false;
    expect("prove NULL handle", prover_prove(NULL, task, &proof), PROVER_STATUS_NULL_POINTER);
    expect("prove NULL task", prover_prove(p, NULL, &proof), PROVER_STATUS_NULL_POINTER);
    expect("prove NULL out", prover_prove(p, task, NULL), PROVER_STATUS_NULL_POINTER);
    expect("prove invalid UTF-8", prover_prove(p, "\xc3\x28", &proof), PROVER_STATUS_INVALID_UTF8);
    expect("prove malformed task", prover_prove(p, "{\"uuid\": ", &proof),
           PROVER_STATUS_MALFORMED_JSON);
    size_t len = strlen(task);
    char *unknown = malloc(len + 1);
    if (!unknown) return 2;
    memcpy(unknown, task, len + 1);
    char *type = strstr(unknown, "\"task_type\": 1");
    if (type) type[strlen("\"task_type\": ")] = '9';
    expect("prove unknown task type", prover_prove(p, unknown, &proof),
           PROVER_STATUS_UNKNOWN_TASK_TYPE);
    free(unknown);
    expect("verify NULL proof", prover_verify(p, NULL, &valid), PROVER_STATUS_NULL_POINTER);
    expect("verify NULL out", prover_verify(p, "{}", NULL), PROVER_STATUS_NULL_POINTER);
    expect("verify malformed proof", prover_verify(p, "[1,", &valid), PROVER_STATUS_MALFORMED_JSON);
    /* A proof for a circuit whose keys are not in KEYS_DIR: refused, no keys generated. */
#define ZERO "\"0x0000000000000000000000000000000000000000000000000000000000000000\""
    const char *unknown_circuit =
        "{\"version\": 1, \"task_id\": \"crafted\", \"spec\": {\"circuit\": \"chunk\", "
        "\"config\": {\"k\": 13, \"tree_depth\": 4, \"max_txs\": 2}}, \"vk_digest\": \"AAAA\", "
        "\"instances\": [" ZERO ", " ZERO ", " ZERO "], \"proof\": \"AAAA\", "
        "\"meta\": {\"engine\": \"native\", \"backend\": \"cpu\", \"prove_ms\": 0}}";
#undef ZERO
    expect("verify unknown circuit", prover_verify(p, unknown_circuit, &valid),
           PROVER_STATUS_UNKNOWN_CIRCUIT);

    uint64_t fake[8] = {0};
    expect("prove foreign handle", prover_prove((Prover *)fake, task, &proof),
           PROVER_STATUS_INVALID_HANDLE);
    prover_free(p);
    expect("prove freed handle", prover_prove(p, task, &proof), PROVER_STATUS_INVALID_HANDLE);
    expect("verify freed handle", prover_verify(p, "{}", &valid), PROVER_STATUS_INVALID_HANDLE);
    prover_free(p); /* double free: ignored, reported */
    expect("double free", PROVER_STATUS_INVALID_HANDLE, PROVER_STATUS_INVALID_HANDLE);
    prover_free(NULL);
    prover_string_free(NULL);
    if (proof != NULL) {
        printf("FAIL an out-pointer was written by a failed call\n");
        failures++;
    }
    free(task);
    printf("%s\n", failures == 0 ? "c host: all checks passed" : "c host: FAILED");
    return failures == 0 ? 0 : 1;
}
