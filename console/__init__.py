"""The operator console: the ``klaviyo-export`` command (``cli`` + ``commands/``) and the
demo (``python -m console.demo``, ``make run``). It drives every other package.
"""
