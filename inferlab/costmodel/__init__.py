"""inferlab.costmodel"""
