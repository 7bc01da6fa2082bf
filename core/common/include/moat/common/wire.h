#pragma once
/* The client-facing constants that both languages need: moatd and the C++
 * client take them through their C++ names (moat/ipc/frame.h, client.h,
 * run_end.h, moat/policy/parser.h), moatctl's C front (app/moatctl/front.c)
 * from here. Plain C: macros only. */

#define MOAT_DEFAULT_SOCKET "/run/moat/moatd.sock"
/* One request frame: a policy is at most 1 MiB; argv and env the rest. */
#define MOAT_MAX_REQUEST_BYTES (4u << 20)
#define MOAT_MAX_RESPONSE_BYTES (64u << 20)
#define MOAT_MAX_POLICY_BYTES (1u << 20)
/* The contract's exit status for a run that could not be set up. */
#define MOAT_RUN_SETUP_FAILED 125
/* A run_brief's answers (docs/protocol.md, "Brief runs"): the job's id, and
 * its end (status, '\n', what the client says on stderr). */
#define MOAT_BRIEF_JOB 'J'
#define MOAT_BRIEF_END 'E'
