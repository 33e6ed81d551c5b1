import logging

import dxpy

logger = logging.getLogger(__name__)
logger.addHandler(dxpy.DXLogHandler())
logger.setLevel(logging.DEBUG)


@dxpy.entry_point("main")
def main(who):
    import inflection  # installed from the applet's execDepends

    print(f"python says hello to {who}")
    print(inflection.camelize("exec_depends_installed"))
    logger.info("an INFO line through the log socket")
    return {"greeting": f"hello {who}"}


dxpy.run()
