// The on-disk object cache against hostile entries: another graph's object
// under this key, truncation at every 64-byte boundary, bit flips, FIFOs,
// symlinks, sparse giants, unsafe directories, a full disk, unlinkable
// objects, eviction. Never a crash, never a wrong answer, the bad entry gone.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

#include "codegen/object_cache.h"
#include "examples/seed_models.h"
#include "tests/helpers.h"

using namespace bj;
namespace fs = std::filesystem;

namespace {

/// A fresh cache directory (0700) for one test, removed afterwards; BJ_CACHE_DIR points at it.
struct TempCache {
  fs::path dir;
  explicit TempCache(const std::string& tag) {
    dir = fs::temp_directory_path() / ("bj-oc-" + tag + "-" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
    setenv("BJ_CACHE_DIR", dir.c_str(), 1);
  }
  ~TempCache() {
    unsetenv("BJ_CACHE_DIR");
    std::error_code ec;
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    fs::remove_all(dir, ec);
  }
  std::string str() const { return dir.string(); }
  std::vector<fs::path> entries() const {
    std::vector<fs::path> v;
    for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path());
    return v;
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void spit(const fs::path& p, const std::string& data) { std::ofstream(p, std::ios::binary | std::ios::trunc) << data; }

const std::string kKey = "graph @g(...) {...}|llvm 19|znver4|+avx512f|codegen 0123";

/// The mlp traced on a batch of `rows`, compiled with the cache on.
struct Compiled {
  std::unique_ptr<examples::MLP> net = std::make_unique<examples::MLP>();
  Tensor x;
  Trace trace;
  explicit Compiled(int64_t rows) {
    manual_seed(3);
    net->initialize();
    x = uniform(-1, 1, {rows, 20});
    NoGradGuard no_grad;
    trace = bj::trace(*net, x);
  }
  /// Compiles, checks the output against eager mode, and says whether the cache answered.
  bool compile_and_check() {
    NoGradGuard no_grad;
    CompiledTrace c = compile(trace);
    GraphRun r = c.run({x});
    REQUIRE(r.guards_hold);
    test::check_near(r.outputs.at(0), (*net)(x), test::Tol{1e-5, 1e-6});
    return c.executable().from_cache();
  }
};

/// Runs f in a child process that has become `nobody` (uid 65534), with `dir` handed to nobody
/// meanwhile: how a test running as root sees what permissions do to other users (root reads
/// and writes anything). True if f returned true.
bool as_nobody(const fs::path& dir, const std::function<bool()>& f) {
  const uid_t nobody = 65534;
  REQUIRE(::chown(dir.c_str(), nobody, nobody) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(setresgid(nobody, nobody, nobody) == 0 && setresuid(nobody, nobody, nobody) == 0 && f() ? 0 : 1);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(::chown(dir.c_str(), 0, 0) == 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

TEST_CASE("object cache: an entry holds its full key, and another graph's object under this name is never run") {
  TempCache cache("swap");
  Compiled b2(2), b4(4);
  CHECK(!b2.compile_and_check());
  CHECK(!b4.compile_and_check());
  CHECK(b2.compile_and_check());  // hits
  auto e = cache.entries();
  REQUIRE(e.size() == 2);
  const std::string a = slurp(e[0]), b = slurp(e[1]);
  spit(e[0], b);  // swapped: each name now holds the other graph's valid entry
  spit(e[1], a);
  CHECK(!b2.compile_and_check());  // rejected, removed, recompiled: right answers
  CHECK(!b4.compile_and_check());
  CHECK(b2.compile_and_check());   // and stored again under the right names
  CHECK(b4.compile_and_check());
}

TEST_CASE("object cache: truncation at every 64-byte boundary and bit flips are rejected and removed") {
  TempCache cache("trunc");
  std::string object(2000, '\0');
  for (size_t i = 0; i < object.size(); ++i) object[i] = static_cast<char>(i * 7);
  codegen::cache_write(cache.str(), "e", kKey, object);
  const fs::path path = cache.dir / "e.o";
  const std::string whole = slurp(path);
  REQUIRE(codegen::cache_read(cache.str(), "e", kKey) == object);
  CHECK(!codegen::cache_read(cache.str(), "e", kKey + "x"));  // another key: rejected...
  CHECK(!fs::exists(path));                                    // ...and removed
  for (size_t cut = 0; cut < whole.size(); cut += 64) {
    CAPTURE(cut);
    spit(path, whole.substr(0, cut));
    CHECK(!codegen::cache_read(cache.str(), "e", kKey));
    CHECK(!fs::exists(path));
  }
  std::vector<size_t> bits;
  for (size_t b = 0; b < 32 * 8; ++b) bits.push_back(b);                       // every header bit
  for (size_t b = 32 * 8; b < whole.size() * 8; b += 97) bits.push_back(b);  // key and object
  for (size_t bit : bits) {
    CAPTURE(bit);
    std::string flipped = whole;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    spit(path, flipped);
    CHECK(!codegen::cache_read(cache.str(), "e", kKey));
    CHECK(!fs::exists(path));
  }
  spit(path, whole);  // and the intact entry still reads
  CHECK(codegen::cache_read(cache.str(), "e", kKey) == object);
}

TEST_CASE("object cache: FIFOs, symlinks, sparse giants and unreadable entries are not followed, waited on or read") {
  TempCache cache("odd");
  const fs::path path = cache.dir / "e.o";
  REQUIRE(mkfifo(path.c_str(), 0600) == 0);
  CHECK(!codegen::cache_read(cache.str(), "e", kKey));  // returns at once
  CHECK(!fs::exists(fs::symlink_status(path)));
  fs::create_symlink("/dev/zero", path);
  CHECK(!codegen::cache_read(cache.str(), "e", kKey));
  CHECK(!fs::exists(fs::symlink_status(path)));  // the link is gone; /dev/zero is not touched
  CHECK(fs::exists("/dev/zero"));
  {
    int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, off_t{3} << 30) == 0);  // 3 GB, sparse
    ::close(fd);
  }
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  CHECK(!codegen::cache_read(cache.str(), "e", kKey));
  getrusage(RUSAGE_SELF, &after);
  CHECK(after.ru_maxrss - before.ru_maxrss < 100 * 1024);  // KiB: it was not read
  CHECK(!fs::exists(path));
  fs::create_directory(path);  // a directory under an entry's name
  CHECK(!codegen::cache_read(cache.str(), "e", kKey));
  fs::remove(path);
  // An unreadable entry (mode 000) is not read and is removed (as root: as nobody, who cannot read it).
  auto unreadable = [&] {
    codegen::cache_write(cache.str(), "e", kKey, "object");
    fs::permissions(path, fs::perms::none, fs::perm_options::replace);
    return !codegen::cache_read(cache.str(), "e", kKey) && !fs::exists(path);
  };
  CHECK((geteuid() != 0 ? unreadable() : as_nobody(cache.dir, unreadable)));
}

TEST_CASE("object cache: a read-only cache directory is only a slower cache (nothing written, nothing left behind)") {
  TempCache cache("readonly");
  auto readonly = [&] {
    codegen::cache_write(cache.str(), "e", kKey, "object");  // fails: silent
    return !codegen::cache_read(cache.str(), "e", kKey) && cache.entries().empty();
  };
  fs::permissions(cache.dir, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
  if (geteuid() != 0) {
    CHECK(readonly());
    Compiled m(2);
    CHECK(!m.compile_and_check());  // right, only not cached
    CHECK(!m.compile_and_check());
  } else {  // root writes anywhere
    CHECK(as_nobody(cache.dir, readonly));
  }
}

TEST_CASE("object cache: a directory owned by another user or writable by others is refused, not used") {
  TempCache cache("unsafe");
  Compiled m(2);
  fs::permissions(cache.dir, fs::perms::owner_all | fs::perms::others_write, fs::perm_options::replace);
  CHECK(!codegen::cache_dir());
  CHECK(!m.compile_and_check());  // compiles, right answer, stores nothing
  CHECK(cache.entries().empty());
  fs::permissions(cache.dir, fs::perms::owner_all, fs::perm_options::replace);
  CHECK(codegen::cache_dir() == cache.str());
  if (geteuid() == 0) {  // as root, hand the directory to nobody
    REQUIRE(::chown(cache.dir.c_str(), 65534, 65534) == 0);
    CHECK(!codegen::cache_dir());
    CHECK(!m.compile_and_check());
    CHECK(cache.entries().empty());
    REQUIRE(::chown(cache.dir.c_str(), 0, 0) == 0);
  }
}

TEST_CASE("object cache: the per-user default directory is created 0700, and an empty BJ_CACHE_DIR is not the current directory") {
  const std::string home = getenv("HOME") ? getenv("HOME") : "";
  const std::string xdg = getenv("XDG_CACHE_HOME") ? getenv("XDG_CACHE_HOME") : "";
  unsetenv("HOME");
  unsetenv("XDG_CACHE_HOME");
  setenv("BJ_CACHE_DIR", "", 1);
  auto dir = codegen::cache_dir();
  REQUIRE(dir);
  CHECK(*dir == (fs::temp_directory_path() / ("blockjit-" + std::to_string(geteuid()))).string());
  struct stat st;
  REQUIRE(::stat(dir->c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(st.st_uid == geteuid());
  unsetenv("BJ_CACHE_DIR");
  if (!home.empty()) setenv("HOME", home.c_str(), 1);
  if (!xdg.empty()) setenv("XDG_CACHE_HOME", xdg.c_str(), 1);
}

TEST_CASE("object cache: a full disk leaves no file behind") {
  TempCache cache("full");
  // A file size limit makes writes fail as a full disk would (EFBIG instead of ENOSPC).
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGXFSZ, &ignore, &old);
  rlimit saved{};
  getrlimit(RLIMIT_FSIZE, &saved);
  rlimit small = saved;
  small.rlim_cur = 4096;
  setrlimit(RLIMIT_FSIZE, &small);
  codegen::cache_write(cache.str(), "e", kKey, std::string(100000, 'x'));
  setrlimit(RLIMIT_FSIZE, &saved);
  sigaction(SIGXFSZ, &old, nullptr);
  CHECK(cache.entries().empty());  // neither the entry nor its temporary file
}

TEST_CASE("object cache: on a really full disk (a 64 KiB tmpfs, as root) compiles stay right and leave nothing behind") {
  TempCache cache("tmpfs");
  if (geteuid() != 0 || ::mount("tmpfs", cache.dir.c_str(), "tmpfs", 0, "size=64k,mode=0700") != 0) {
    MESSAGE("skipped: mounting a tmpfs needs root (and CAP_SYS_ADMIN)");
    return;
  }
  spit(cache.dir / "filler", std::string(60 << 10, 'f'));  // what is left of the disk is smaller than an entry
  codegen::cache_write(cache.str(), "e", kKey, std::string(100000, 'x'));
  CHECK(!fs::exists(cache.dir / "e.o"));
  Compiled m(2);
  CHECK(!m.compile_and_check());  // right, only not cached
  CHECK(!m.compile_and_check());
  CHECK(cache.entries() == std::vector<fs::path>{cache.dir / "filler"});  // no entry, no temporary file
  fs::remove(cache.dir / "filler");
  CHECK(!m.compile_and_check());  // space again: stored,
  CHECK(m.compile_and_check());   // and read back
  CHECK(::umount(cache.dir.c_str()) == 0);
}

TEST_CASE("object cache: an entry that matches its key but does not link is removed and recompiled") {
  TempCache cache("unlinkable");
  Compiled m(2);
  CHECK(!m.compile_and_check());
  auto e = cache.entries();
  REQUIRE(e.size() == 1);
  const std::string whole = slurp(e[0]);
  uint64_t key_size;
  std::memcpy(&key_size, whole.data() + 8, 8);
  const std::string key = whole.substr(32, key_size), name = e[0].stem().string();
  codegen::cache_write(cache.str(), name, key, "this is not an ELF object");
  CHECK(!m.compile_and_check());  // not linkable: removed, compiled, stored again
  CHECK(m.compile_and_check());
}

TEST_CASE("object cache: least recently used entries are evicted past BJ_CACHE_MB") {
  TempCache cache("lru");
  setenv("BJ_CACHE_MB", "1", 1);
  const std::string object(300 << 10, 'o');
  for (int i = 0; i < 3; ++i) codegen::cache_write(cache.str(), "e" + std::to_string(i), kKey, object);
  // e0 is the oldest; reading it makes it the most recently used
  const auto t = fs::file_time_type::clock::now();
  for (int i = 0; i < 3; ++i) fs::last_write_time(cache.dir / ("e" + std::to_string(i) + ".o"), t - std::chrono::seconds(10 - i));
  CHECK(codegen::cache_read(cache.str(), "e0", kKey));
  codegen::cache_write(cache.str(), "e3", kKey, object);
  unsetenv("BJ_CACHE_MB");
  CHECK(fs::exists(cache.dir / "e0.o"));
  CHECK(!fs::exists(cache.dir / "e1.o"));  // the least recently used one went
  CHECK(fs::exists(cache.dir / "e3.o"));
  uint64_t total = 0;
  for (const auto& p : cache.entries()) total += fs::file_size(p);
  CHECK(total <= (1u << 20));
}
