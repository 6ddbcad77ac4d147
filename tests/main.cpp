// doctest's main for the unit tests. Compiled objects go to a cache folder
// of this run's own (unless BJ_CACHE_DIR says otherwise), so tests never
// depend on what an earlier build left in the user's cache.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  std::string dir;
  if (!std::getenv("BJ_CACHE_DIR")) {
    dir = (std::filesystem::temp_directory_path() / ("bj-test-cache-" + std::to_string(getpid()))).string();
    setenv("BJ_CACHE_DIR", dir.c_str(), 1);
  }
  int rc = doctest::Context(argc, argv).run();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}
