# Writes OUT (a header defining BJ_CODEGEN_SOURCE_HASH) from the SHA-256 of
# every file listed in LIST, so the object cache's key changes with any edit
# to the code generator. Run by the build (codegen/CMakeLists.txt); the
# header is rewritten only when the hash changes.
file(STRINGS "${LIST}" files)
list(SORT files)
set(all "")
foreach(f IN LISTS files)
  file(SHA256 "${f}" h)
  string(APPEND all "${h}")
endforeach()
string(SHA256 total "${all}")
file(WRITE "${OUT}.tmp" "#define BJ_CODEGEN_SOURCE_HASH \"${total}\"\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
