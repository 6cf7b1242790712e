# fusec_add_kernel: generate a kernel with `fusec emit-c` while a project builds, and compile it
# into one of the project's targets.
#
#   fusec_add_kernel(TARGET app SPEC net.fuse ENTRY fuse_hl
#                    [DIMS H=512 W=512 ...] [PREFIX model.neck] [VECTOR_WIDTH 16]
#                    [COMPILE_OPTIONS -O3 -march=native ...])
#
# The generated `<ENTRY>.c`, `<ENTRY>.h` and `fuse_rt.h` go to
# ${CMAKE_CURRENT_BINARY_DIR}/fusec/<TARGET>/<ENTRY>/, which is added to the target's include path, so
# the program includes "<ENTRY>.h" and uses fuse_k_<ENTRY>_info (fuse_rt.h documents the API).
# The target is linked with the fusec runtime. The kernel is regenerated when the spec or
# fusec changes. COMPILE_OPTIONS default to -O3 -march=native -fno-math-errno for the
# generated file only (never -ffast-math: the generated math relies on IEEE rounding).
#
# Requires FUSEC_EXECUTABLE (the fusec program's target) and FUSEC_RUNTIME (the runtime
# library's target), which fusecConfig.cmake and fusec's own CMakeLists.txt set.
function(fusec_add_kernel)
    cmake_parse_arguments(K "" "TARGET;SPEC;ENTRY;PREFIX;VECTOR_WIDTH" "DIMS;COMPILE_OPTIONS"
                          ${ARGN})
    foreach(required TARGET SPEC ENTRY)
        if(NOT K_${required})
            message(FATAL_ERROR "fusec_add_kernel: ${required} is required")
        endif()
    endforeach()
    if(NOT FUSEC_EXECUTABLE OR NOT FUSEC_RUNTIME)
        message(FATAL_ERROR "fusec_add_kernel: FUSEC_EXECUTABLE and FUSEC_RUNTIME must be set "
                            "(find_package(fusec) sets them)")
    endif()
    get_filename_component(spec ${K_SPEC} ABSOLUTE)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/fusec/${K_TARGET}/${K_ENTRY})
    set(args emit-c ${spec} --entry ${K_ENTRY} -o ${out}/${K_ENTRY}.c
             --header ${out}/${K_ENTRY}.h)
    foreach(dim ${K_DIMS})
        list(APPEND args --dim ${dim})
    endforeach()
    if(K_PREFIX)
        list(APPEND args --prefix ${K_PREFIX})
    endif()
    if(K_VECTOR_WIDTH)
        list(APPEND args --vector-width ${K_VECTOR_WIDTH})
    endif()
    if(NOT K_COMPILE_OPTIONS)
        set(K_COMPILE_OPTIONS -O3 -march=native -fno-math-errno)
    endif()
    add_custom_command(
        OUTPUT ${out}/${K_ENTRY}.c ${out}/${K_ENTRY}.h ${out}/fuse_rt.h
        COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
        COMMAND ${FUSEC_EXECUTABLE} ${args}
        DEPENDS ${spec} ${FUSEC_EXECUTABLE}
        COMMENT "fusec: generating kernel ${K_ENTRY} from ${K_SPEC}"
        VERBATIM)
    target_sources(${K_TARGET} PRIVATE ${out}/${K_ENTRY}.c)
    set_source_files_properties(${out}/${K_ENTRY}.c PROPERTIES COMPILE_OPTIONS
                                "${K_COMPILE_OPTIONS}")
    target_include_directories(${K_TARGET} PRIVATE ${out})
    target_link_libraries(${K_TARGET} PRIVATE ${FUSEC_RUNTIME} m)
endfunction()
