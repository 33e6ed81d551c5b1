"""The seed's scatter-gather pattern, with a file in place of the retired GTable."""

import re

import dxpy


def read_lines(input_file):
    with dxpy.open_dxfile(input_file) as handle:
        return handle.read().splitlines()


@dxpy.entry_point("main")
def main(input_file, num_subjobs=3):
    num_rows = len(read_lines(input_file))
    subjobs = []
    for i in range(num_subjobs):
        subjob_input = {
            "input_file": input_file,
            "start_row": num_rows * i // num_subjobs,
            "end_row": num_rows * (i + 1) // num_subjobs,
        }
        subjobs.append(dxpy.new_dxjob(subjob_input, "process"))
    postprocess_job = dxpy.new_dxjob(
        fn_input={"partial_counts": [subjob.get_output_ref("partial_count") for subjob in subjobs]},
        fn_name="postprocess",
        depends_on=subjobs,
    )
    return {"count": postprocess_job.get_output_ref("count")}


@dxpy.entry_point("process")
def process(input_file, start_row, end_row):
    rows = read_lines(input_file)[start_row:end_row]
    return {"partial_count": sum(1 for row in rows if re.match(r"^A+$", row))}


@dxpy.entry_point("postprocess")
def postprocess(partial_counts):
    print("gathering", partial_counts)
    return {"count": sum(partial_counts)}


dxpy.run()
