module example.com/prover-ffi-host

go 1.19
