"""Small example images for the Digits handler's schema, as request strings.

`rendering.draw_digit(3, size=24)` as plain base64, and `rendering.draw_digit(7, size=24)`
as a data: URL, the two forms a client may send. Literals, so importing the handler
stays free of Pillow and file reads; tests/models check that each still reads as its digit.
"""

from __future__ import annotations

THREE_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAAAAADFHGIkAAABWklEQVR4nF2SO0sDQRSF70xmTYLZyGJUCChB11dnkdJKBMVC"
    "EbEJ/g0r/4AgWIiVjRB8oBaxsROxMY2ojRYKATGQxuDaGZO9cyx2dk1yu7kf93HmHgEyARYkSYRPYQB0jIiItOwEWlL9NJdx"
    "7QTCGgThHYwJlXLdC/hBggCAcTycktkJx+oZege3g3lKr794D6Vpa/GHdRt4WioCAI6S8eugmSIikjRzRQD9JqtaeR3D2Wdo"
    "oDqezDf0fysTH9uuTbtmrQhwa3Mgkc7tNILZEdD4dmQ2k78x27ZV6JPZQdWryt2tAOB5a1QtM3cD1kCpzzoLSkLADICbWJBz"
    "TY4EEkGS1pLVV0XZQcZ8v3h8lUpaolhDwdKRch+X8ZHVvfvzlf70ZL1NeQv7pIgcO6acWyPEXJAPP9/uao3xtY0pc1wRmYG8"
    "cqWQofC0IfBJSiLyZZcZAqMgFrmH/gDwRjn13jbUbQAAAABJRU5ErkJggg=="
)

SEVEN_DATA_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAAAAADFHGIkAAABNklEQVR4nGWSvUoDQRSFz8xuEj"
    "VZCCL+NDaCEAlBRfARxEYQhHTWItgLIvgUVj6FtSAkIEoKxcZGLRQVRFEjJGaZucdisjtrvNWd+839OzOKAABC4a+FLq4gSY"
    "SBB1TsFAcyFAHiffOhQleys7ZFDQAkDRsI+heH9WSbQjIEEMjywUVJAOL7+mujZIN+RsZ2cxO3tCTZB8Zaa2PTjMIdGmYAST"
    "GG63rmxcoAINmMCoeukAfC9ulnPTe9uv9js0Cku5KfHR8bLaDhmoTJpuYufhqRKKpW3H7KiQjRlyePR0PHc2VNp2em9zbme6"
    "QbyqUBAGz3Si3mTaJ/CiR4vtc1r64HbH0UF/x7pUCp83iq5s+JQ/12lq+WJc1I9pDgpoUliB8mmdX29uqvIunsyYL/LPSuhc"
    "78oV8lS+6/qFOHegAAAABJRU5ErkJggg=="
)
