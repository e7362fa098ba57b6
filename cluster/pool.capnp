# Wire messages of a petaring pool (coordinator <-> workers, clients and ranks).
#
# Every frame on a pool connection carries exactly one Envelope (frame.h adds the length
# prefix, magic and protocol version). The first frames of a connection are the
# handshake (auth.h): the server sends `challenge`, the peer answers `hello`, the server
# answers `welcome` (or `error` and closes). After that the peer sends requests and the
# server answers each with exactly one reply, in order. Which requests a peer may send
# depends on the role it proved in `hello`; anything else closes the connection.
@0xdb4e45231201cfb7;

$import "/capnp/c++.capnp".namespace("petaring::wire");

enum Role {
  worker @0;   # a node lending its devices; proves the pool secret
  client @1;   # a person or script (submit, jobs, cancel, ...); proves the pool secret
  rank @2;     # one rank of one job attempt; proves that job's token only
}

struct Challenge {
  nonce @0 :Data;            # 32 random bytes, fresh per connection
}

struct Hello {
  role @0 :Role;
  name @1 :Text;             # worker: node name; client: free text; rank: "JOB.ATTEMPT"
  clientNonce @2 :Data;      # 32 random bytes; the server proves itself over them
  mac @3 :Data;              # HMAC-SHA256(key, "petaring-pool-hello" | role | name | nonce)
}

struct Welcome {
  mac @0 :Data;              # HMAC-SHA256(key, "petaring-pool-welcome" | clientNonce)
}

struct Failure {
  kind @0 :Text;             # error_kind_name() of the fault
  message @1 :Text;
}

struct Device {
  index @0 :UInt32;
  kind @1 :Text;             # "cpu" (virtual GPU), "amd", ...
  memoryBytes @2 :UInt64;
  flopsPerS @3 :Float64;     # measured speed; the scheduler's ledger estimates FLOPs with it
}

struct RegisterNode {
  name @0 :Text;
  devices @1 :List(Device);
}

struct Registered {
  nodeId @0 :Int64;
}

struct RankExit {
  jobId @0 :Int64;
  attempt @1 :UInt32;
  rank @2 :UInt32;
  exitCode @3 :Int32;        # 128+signal when killed by a signal
}

struct JobMetrics {
  jobId @0 :Int64;
  attempt @1 :UInt32;
  line @2 :Text;             # the last JSONL metrics line rank 0 wrote
}

struct RunningRank {
  jobId @0 :Int64;
  attempt @1 :UInt32;
  rank @2 :UInt32;
}

struct Heartbeat {
  nodeId @0 :Int64;
  running @1 :List(RunningRank);
  exits @2 :List(RankExit);
  metrics @3 :List(JobMetrics);
}

struct Assignment {
  jobId @0 :Int64;
  attempt @1 :UInt32;
  recipeYaml @2 :Text;       # the recipe as submitted (already validated)
  worldSize @3 :UInt32;
  ranks @4 :List(UInt32);    # the ranks this node runs, in local-rank order
  token @5 :Data;            # the job attempt's token (auth.h job_token)
  resume @6 :Bool;           # an earlier attempt ran: continue from its checkpoint
  checkpointDir @7 :Text;    # the job's checkpoint folder on a filesystem every worker
                             # shares (same path everywhere); "" = the worker's own
                             # WORKDIR/job-ID/checkpoints (a re-placed job on another
                             # host then starts over)
}

struct HeartbeatReply {
  start @0 :List(Assignment);
  stop @1 :List(RunningRank);  # ranks to end (cancelled, failed elsewhere, reclaimed)
  reclaimed @2 :Bool;          # the node was reclaimed: stop everything and leave
}

struct Submit {
  recipeYaml @0 :Text;
  recipeName @1 :Text;
  gpus @2 :UInt32;
  priority @3 :Int32;
  tenant @4 :Text;
  maxGpus @5 :UInt32;        # > gpus: elastic, runs on any count in [gpus, maxGpus]
}

struct JobInfo {
  id @0 :Int64;
  name @1 :Text;
  tenant @2 :Text;
  priority @3 :Int32;
  gpus @4 :UInt32;
  state @5 :Text;            # queued, running, finished, failed, cancelled
  attempt @6 :UInt32;
  reason @7 :Text;           # why it waits or why it failed
  placement @8 :Text;        # "node:device,..." of the current attempt
  lastMetrics @9 :Text;
  submittedMs @10 :Int64;
  minGpus @11 :UInt32;
  maxGpus @12 :UInt32;
}

struct NodeInfo {
  id @0 :Int64;
  name @1 :Text;
  state @2 :Text;            # alive, dead, reclaimed
  devices @3 :UInt32;
  busy @4 :UInt32;
  lastHeartbeatMs @5 :Int64;
}

struct LedgerEntry {
  id @0 :Int64;
  jobId @1 :Int64;
  attempt @2 :UInt32;
  tenant @3 :Text;
  node @4 :Text;
  gpuSeconds @5 :Float64;
  recordedMs @6 :Int64;
  flops @7 :Float64;         # estimated FLOPs delivered (seconds held x measured FLOP/s)
}

struct JoinJob {
  jobId @0 :Int64;
  attempt @1 :UInt32;
}

struct Joined {
  storeAddress @0 :Text;     # unused (empty): ranks meet through the coordinator (StoreOp)
}

# The rendezvous store of a job attempt, served by the coordinator to that attempt's
# ranks only: the table is the one of the job and attempt the rank proved in its hello,
# so a rank can neither read nor write another job's keys. Gone when the attempt ends;
# a rank of an ended attempt gets a failedPrecondition failure.
struct StoreOp {
  op @0 :Op;
  key @1 :Text;
  value @2 :Data;            # set: the value
  delta @3 :Int64;           # add: what to add to the counter
  enum Op {
    set @0;
    get @1;                  # answers at once: found or not (the rank polls)
    add @2;
  }
}

struct StoreReply {
  found @0 :Bool;
  value @1 :Data;            # get: the value; add: the new count as decimal text
}

struct Envelope {
  union {
    challenge @0 :Challenge;
    hello @1 :Hello;
    welcome @2 :Welcome;
    failure @3 :Failure;
    registerNode @4 :RegisterNode;
    registered @5 :Registered;
    heartbeat @6 :Heartbeat;
    heartbeatReply @7 :HeartbeatReply;
    submit @8 :Submit;
    submitted @9 :Int64;     # the new job's id
    listJobs @10 :Void;
    jobs @11 :List(JobInfo);
    getJob @12 :Int64;
    job @13 :JobInfo;
    cancel @14 :Int64;
    ok @15 :Void;
    listNodes @16 :Void;
    nodes @17 :List(NodeInfo);
    getLedger @18 :Void;
    ledger @19 :List(LedgerEntry);
    reclaim @20 :Text;       # node name to reclaim
    joinJob @21 :JoinJob;
    joined @22 :Joined;
    storeOp @23 :StoreOp;
    storeReply @24 :StoreReply;
  }
}
